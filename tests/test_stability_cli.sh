#!/usr/bin/env bash
# test_stability_cli.sh — the stability commands end to end on the synthetic
# model, where the answer is known: isolated features recovered (cos > 0.95)
# and stable, block latents unstable while each block's subspace is
# recovered (principal angles < 10°); `loupe stability` matches numpy's
# max-cosine and scipy's linear_sum_assignment on these trained decoders;
# `loupe pool` builds and fine-tunes a pooled SAE; bad input gives one clear
# line and a non-zero exit, and writes nothing.
set -u
cd "$(dirname "$0")/.."
L=${LOUPE:-$(pwd)/build/loupe}
PY=${PY:-/usr/bin/python3}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
ASAN=0; case "${BUILD:-build}" in *asan*) ASAN=1;; esac

# ---- the synthetic model and three seeds --------------------------------------
"$L" synth --out "$T/syn" --rows 200000 2>"$T/err" || fail "synth: $(cat "$T/err")"
TOK=500000; [ $ASAN = 1 ] && TOK=60000  # under the sanitizers: the same paths, fewer steps
"$L" train --store "$T/syn/store" --arch topk --d-sae 160 --k 8 --tokens $TOK --seeds 0,1,2 --out "$T/sae" \
  --quiet 2>"$T/err" >/dev/null || fail "train: $(tail -1 "$T/err")"
S="$T/sae/seed0 $T/sae/seed1 $T/sae/seed2"

# ---- known answer ---------------------------------------------------------------
"$L" synth --truth "$T/syn/truth.safetensors" $S --json >"$T/score.json" 2>"$T/err" || fail "score: $(cat "$T/err")"
[ $ASAN = 1 ] || "$PY" - "$T/score.json" <<'EOF' || fail "known-answer criteria: $(cat "$T/score.json")"
import json, sys
s = json.load(open(sys.argv[1]))
ok = True
def need(cond, what):
    global ok
    if not cond:
        print("criterion failed:", what, file=sys.stderr); ok = False
need(s["iso_recovered"] >= 0.95, "isolated features recovered at cos >= 0.95 (%.3f)" % s["iso_recovered"])
need(s["iso_best_mean"] > 0.98, "mean best cosine of isolated features (%.4f)" % s["iso_best_mean"])
need(s["iso_frac_stable"] >= 0.95, "isolated-feature latents stable (%.3f)" % s["iso_frac_stable"])
need(s["block_frac_stable"] < 0.5 and s["block_stability"] < 0.35, "block latents unstable (%.3f stable, mean %.3f)" % (s["block_frac_stable"], s["block_stability"]))
need(s["block_dir_recovered"] < 0.5, "block directions not recovered individually (%.3f)" % s["block_dir_recovered"])
need(s["block_angle_max_deg"] < 10, "block subspaces recovered, principal angles < 10 deg (%.2f)" % s["block_angle_max_deg"])
need(s["block_latents"] >= 24, "enough latents in the blocks (%.1f)" % s["block_latents"])
sys.exit(0 if ok else 1)
EOF

# ---- loupe stability on the trained decoders vs numpy / scipy ----------------------
"$L" stability $S --store "$T/syn/store" --rows 50000 --out "$T/st" --quiet >"$T/st.txt" 2>"$T/err" \
  || fail "stability: $(cat "$T/err")"
grep -q "fraction stable" "$T/st.txt" || fail "no summary printed"
[ -s "$T/st/features.csv" ] && [ -s "$T/st/stability.json" ] || fail "stability outputs missing"
ASAN=$ASAN "$PY" - "$T" <<'EOF' || fail "stability vs numpy/scipy"
import csv, json, os, sys
import numpy as np
from scipy.optimize import linear_sum_assignment
sys.path.insert(0, "tests/ref")
from st_np import load
T = sys.argv[1]
W = []
for s in range(3):
    w = load(os.path.join(T, "sae", "seed%d" % s, "sae_weights.safetensors"))["W_dec"].astype(np.float64)
    W.append(w / np.linalg.norm(w, axis=1, keepdims=True))
rows = list(csv.DictReader(open(os.path.join(T, "st", "features.csv"))))
F = W[0].shape[0]
assert len(rows) == 3 * F, len(rows)
bad = 0
for a in range(3):
    mine = [r for r in rows if int(r["sae"]) == a]
    for b in range(3):
        if a == b:
            continue
        S = W[a] @ W[b].T
        best, arg = S.max(1), S.argmax(1)
        got_c = np.array([float(r["best_cos_sae%d" % b]) for r in mine])
        got_a = np.array([int(r["best_match_sae%d" % b]) for r in mine])
        bad += int((np.abs(got_c - best) > 1e-4).sum())
        # a different argmax only at a tie
        bad += int(((got_a != arg) & (np.abs(S[np.arange(F), got_a] - best) > 1e-5)).sum())
        r_, c_ = linear_sum_assignment(-S)
        o2o = np.array([int(r["o2o_match_sae%d" % b]) for r in mine])
        tot_ref = S[r_, c_].sum()
        tot = S[np.arange(F), o2o].sum()
        if sorted(o2o) != list(range(F)) or abs(tot - tot_ref) > 1e-3:
            print("one-to-one %d->%d: total %.6f vs scipy %.6f" % (a, b, tot, tot_ref), file=sys.stderr); bad += 1
        same = int((o2o == c_).sum())
        if same < F - 4:  # ties aside
            print("one-to-one %d->%d: %d of %d rows as scipy" % (a, b, same, F), file=sys.stderr); bad += 1
    # stability score = fraction of other seeds with a match >= 0.7
    for r in mine:
        want = np.mean([float(r["best_cos_sae%d" % b]) >= 0.7 for b in range(3) if b != a])
        bad += abs(float(r["stability"]) - want) > 1e-6
j = json.load(open(os.path.join(T, "st", "stability.json")))
assert len(j["tau_sweep"]) == 6 and j["subspaces"]["rank"] > 0 and len(j["bins"]) == 3
assert all(e["ev_full"] > (0.8 if os.environ.get("ASAN") != "1" else 0) for e in j["saes"]), [e["ev_full"] for e in j["saes"]]
if bad:
    print("mismatches:", bad, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF

# ---- loupe pool ------------------------------------------------------------------
"$L" pool $S --out "$T/pool" --store "$T/syn/store" --tokens 100000 --quiet >"$T/pool.txt" 2>"$T/err" \
  || fail "pool: $(cat "$T/err")"
grep -q "clusters" "$T/pool.txt" || fail "pool printed no clustering"
"$L" sae info "$T/pool" >/dev/null 2>&1 || fail "pooled SAE does not load"
[ $ASAN = 1 ] || "$PY" - "$T/pool.txt" <<'EOF' || fail "pooled SAE EV too low: $(cat "$T/pool.txt")"
import re, sys
t = open(sys.argv[1]).read()
m = re.search(r"after ([0-9.]+).*originals' mean ([0-9.]+)", t)
sys.exit(0 if m and float(m.group(1)) > float(m.group(2)) - 0.03 else 1)
EOF

# ---- bad input: one clear line, non-zero exit, nothing written ---------------------
expect_err() { # expect_err PATTERN cmd...
  local pat=$1; shift
  "$@" >"$T/o" 2>"$T/e" && fail "should fail: $*"
  [ "$(wc -l <"$T/e")" -le 2 ] || fail "more than one error line for: $* ($(cat "$T/e"))"
  grep -qi -- "$pat" "$T/e" || fail "error for '$*' lacks '$pat': $(cat "$T/e")"
}
"$L" synth --out "$T/syn32" --rows 5000 --d 32 --n-iso 8 --blocks 1 --block-r 4 --block-m 8 2>/dev/null || fail "small synth"
"$L" train --store "$T/syn32/store" --d-sae 32 --k 4 --tokens 4096 --batch 512 --seeds 0 --out "$T/sae32" --quiet \
  >/dev/null 2>&1 || fail "small train"
expect_err "d_in" "$L" stability "$T/sae/seed0" "$T/sae32/seed0" --out "$T/bad1"
[ -e "$T/bad1" ] && fail "a failed run left $T/bad1"
for field in hook model; do
  cp -r "$T/sae/seed1" "$T/mixed_$field"
  "$PY" - "$T/mixed_$field/cfg.json" "$field" <<'EOF'
import json, sys
p, f = sys.argv[1], sys.argv[2]
c = json.load(open(p))
if f == "hook":
    c["hook_name"] = "blocks.3.hook_resid_post"; c["loupe"]["hook"] = "blocks.3.hook_resid_post"
else:
    c["model_name"] = "/models/other.bin"; c["loupe"]["model"] = "/models/other.bin"
json.dump(c, open(p, "w"))
EOF
  expect_err "$field" "$L" stability "$T/sae/seed0" "$T/mixed_$field" --out "$T/bad_$field"
  [ -e "$T/bad_$field" ] && fail "a failed run left $T/bad_$field"
done
expect_err "at least two" "$L" stability "$T/sae/seed0"
expect_err "no_such_dir" "$L" stability "$T/sae/seed0" "$T/no_such_dir"
expect_err "match mode" "$L" stability $S --match sideways
expect_err "tau" "$L" stability $S --tau 2
expect_err "out" "$L" pool $S
expect_err "nonexistent" "$L" synth --truth "$T/nonexistent.safetensors" "$T/sae/seed0"
expect_err "d_in\|d=" "$L" synth --truth "$T/syn32/truth.safetensors" "$T/sae/seed0"
expect_err "m = 2r\|gauss" "$L" synth --out "$T/bad_synth" --block-r 4 --block-m 9
[ -e "$T/bad_synth/store" ] && fail "a refused synth left a store"
echo "test_stability_cli: ok"
