# loupe — build: `make` builds build/libloupe.a and build/loupe; `make test` runs the suite.
# The build says what it found. Opt out of a backend with NO_DNNL=1 or NO_OPENMP=1;
# SANITIZE=1 builds with AddressSanitizer + UBSan into build-asan/.

CC      ?= cc
OPT     ?= -O3 -march=native -fno-math-errno -fno-trapping-math
ifeq ($(SANITIZE),1)
BUILD   ?= build-asan
OPT      = -O1 -g -fno-omit-frame-pointer -fno-math-errno -fno-trapping-math -fsanitize=address,undefined
LDSAN    = -fsanitize=address,undefined
else
BUILD   ?= build
endif
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Iinclude -Isrc $(OPT) -g
LDLIBS  += -lm -lpthread

# ---- dependency detection ---------------------------------------------------
have = $(shell printf '\043include <$(2)>\nint main(void){return 0;}\n' | $(CC) -x c - -o /dev/null $(1) 2>/dev/null && echo 1)

CJSON_CFLAGS := $(shell pkg-config --cflags libcjson 2>/dev/null)
CJSON_LIBS   := $(shell pkg-config --libs libcjson 2>/dev/null || echo -lcjson)
HAVE_CJSON   := $(call have,$(CJSON_CFLAGS) $(CJSON_LIBS),cjson/cJSON.h)
ifneq ($(HAVE_CJSON),1)
$(error cJSON not found: apt-get install libcjson-dev)
endif
CFLAGS += $(CJSON_CFLAGS)
LDLIBS += $(CJSON_LIBS)

OPENBLAS_INC := $(firstword $(wildcard /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/aarch64-linux-gnu/openblas-pthread /usr/include/openblas))
HAVE_OPENBLAS := $(call have,-I$(OPENBLAS_INC) -lopenblas,cblas.h)
ifneq ($(HAVE_OPENBLAS),1)
$(error OpenBLAS not found: apt-get install libopenblas-dev)
endif
CFLAGS += -I$(OPENBLAS_INC) -DLP_HAVE_OPENBLAS
LDLIBS += -lopenblas

ifneq ($(NO_DNNL),1)
HAVE_DNNL := $(call have,-ldnnl,dnnl.h)
endif
ifeq ($(HAVE_DNNL),1)
CFLAGS += -DLP_HAVE_DNNL
LDLIBS += -ldnnl
endif

ifneq ($(NO_OPENMP),1)
HAVE_OMP := $(call have,-fopenmp,omp.h)
endif
ifeq ($(HAVE_OMP),1)
CFLAGS += -fopenmp
LDLIBS += -fopenmp
endif

# optional: libcurl (the LLM explainer of loupe features), libmicrohttpd (loupe serve)
ifneq ($(NO_CURL),1)
HAVE_CURL := $(call have,-lcurl,curl/curl.h)
endif
ifeq ($(HAVE_CURL),1)
CFLAGS += -DLP_HAVE_CURL
LDLIBS += -lcurl
endif
ifneq ($(NO_MHD),1)
HAVE_MHD := $(call have,-lmicrohttpd,microhttpd.h)
endif
ifeq ($(HAVE_MHD),1)
CFLAGS += -DLP_HAVE_MHD
LDLIBS += -lmicrohttpd
endif

yn = $(if $(filter 1,$(1)),✓,✗)
$(info loupe build: $(call yn,$(HAVE_CJSON)) cJSON  $(call yn,$(HAVE_OPENBLAS)) OpenBLAS  $(call yn,$(HAVE_DNNL)) oneDNN (GEMM)  $(call yn,$(HAVE_OMP)) OpenMP  $(call yn,$(HAVE_CURL)) libcurl  $(call yn,$(HAVE_MHD)) libmicrohttpd  ✗ CUDA  -> $(BUILD)/)

# ---- sources -----------------------------------------------------------------
LIB_SRC  := $(sort $(filter-out src/cli/%,$(wildcard src/*/*.c)))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))
HDRS     := $(wildcard include/loupe/*.h include/*.h src/*/*.h)

all: $(BUILD)/libloupe.a $(BUILD)/loupe $(TEST_BIN)

$(BUILD)/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libloupe.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/loupe: $(CLI_OBJ) $(BUILD)/libloupe.a
	$(CC) $(CFLAGS) $(LDSAN) -o $@ $(CLI_OBJ) $(BUILD)/libloupe.a $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libloupe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) -o $@ $< $(BUILD)/libloupe.a $(LDLIBS)

bench: $(BENCH_BIN)

$(BUILD)/tests/%: tests/%.c tests/testutil.h $(BUILD)/libloupe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) -o $@ $< $(BUILD)/libloupe.a $(LDLIBS)

test: all
	BUILD=$(BUILD) bash tests/run.sh

clean:
	rm -rf build build-asan

.PHONY: all test clean bench
