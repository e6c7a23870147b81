#!/usr/bin/env bash
# Bad input: every case gives exit status 1..127, at most 3 lines on stderr
# naming the file (or the bad value), and no crash.
set -u
cd "$(dirname "$0")/.."
L=${LOUPE:-build/loupe}; S=${LOUPE_SHARED:-../shared}
M=$S/models/stories260K.bin; T=$S/models/tok512.bin
D=$(mktemp -d); trap 'rm -rf $D' EXIT
fail=0; n=0
expect_err() { # name, needle, command...
  local name=$1 needle=$2; shift 2; n=$((n+1))
  "$@" >$D/out 2>$D/err; local rc=$?
  if [ $rc -eq 0 ] || [ $rc -ge 128 ] || ! grep -qF -- "$needle" $D/err || [ $(wc -l < $D/err) -gt 3 ]; then
    echo "FAIL $name: rc=$rc err=$(head -c 300 $D/err)"; fail=1
  fi
}
head -c 50000 $M > $D/trunc.bin
printf '\x40\x00\x00\x00\xff\xff\xff\x7f\x05\x00\x00\x00' > $D/absurd.bin; head -c 200 /dev/zero >> $D/absurd.bin
: > $D/empty.bin
head -c 3000 $T > $D/tok_trunc.bin
expect_err "truncated checkpoint" trunc.bin $L generate --model $D/trunc.bin --tokenizer $T --prompt hi --steps 4
expect_err "absurd header" absurd.bin $L generate --model $D/absurd.bin --tokenizer $T --prompt hi --steps 4
expect_err "empty checkpoint" empty.bin $L generate --model $D/empty.bin --tokenizer $T --prompt hi --steps 4
expect_err "missing model" nothere.bin $L generate --model $D/nothere.bin --tokenizer $T --prompt hi
expect_err "truncated tokenizer" tok_trunc.bin $L generate --model $M --tokenizer $D/tok_trunc.bin --prompt hi
# a checkpoint whose header claims a larger vocab than the tokenizer holds
${PY:-/usr/bin/python3} - $M $D/v1000.bin <<'PY'
import sys, struct
b = bytearray(open(sys.argv[1], 'rb').read()); dim = 64
struct.pack_into('<i', b, 20, 1000)
open(sys.argv[2], 'wb').write(bytes(b[:28]) + b'\0' * (1000 * dim * 4) + bytes(b[28 + 512 * dim * 4:]))
PY
expect_err "tokenizer of wrong vocab size" tok512.bin $L generate --model $D/v1000.bin --tokenizer $T --prompt hi --steps 4
# HF directory whose safetensors offsets overlap / exceed the file
$L convert --model $M --to hf --out $D/hf 2>/dev/null
cp -r $D/hf $D/hf_bad
${PY:-/usr/bin/python3} - $D/hf_bad/model.safetensors <<'PY'
import sys, json, struct
p = sys.argv[1]; b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n])
k = sorted(x for x in h if x != '__metadata__')[1]
h[k]['data_offsets'] = [0, h[k]['data_offsets'][1] - h[k]['data_offsets'][0]]  # overlap the first tensor
hj = json.dumps(h).encode(); hj += b' ' * (-len(hj) % 8)
open(p, 'wb').write(struct.pack('<Q', len(hj)) + hj + b[8+n:])
PY
expect_err "overlapping safetensors offsets" model.safetensors $L generate --model $D/hf_bad --tokenizer $T --prompt hi
cp -r $D/hf $D/hf_short; head -c 100000 $D/hf/model.safetensors > $D/hf_short/model.safetensors
expect_err "safetensors offsets past the end" model.safetensors $L generate --model $D/hf_short --tokenizer $T --prompt hi
expect_err "unknown hook" hook_nope $L harvest --model $M --tokenizer $T --data $S/data/tinystories/five_stories.txt --hook blocks.0.hook_nope --tokens 100 --out $D/st
expect_err "hook layer out of range" "out of range" $L harvest --model $M --tokenizer $T --data $S/data/tinystories/five_stories.txt --hook blocks.9.hook_resid_post --tokens 100 --out $D/st
[ ! -e $D/st ] || { echo "FAIL: a failed harvest left $D/st behind"; fail=1; }
expect_err "missing data" nodata.txt $L harvest --model $M --tokenizer $T --data $D/nodata.txt --hook blocks.0.hook_resid_post --tokens 100 --out $D/st2
expect_err "unknown option" "--bogus" $L generate --bogus 1
expect_err "bad number" "--steps" $L generate --steps many
expect_err "store info on a non-store" manifest.json $L store info $D
echo "bad input: $n cases"
exit $fail
