#!/usr/bin/env bash
# test_reproduce_stability.sh — `loupe reproduce stability --quick` runs end to
# end (stories260K + the synthetic model) and writes the report contract:
# report.md with the tables and claims, report.json with the same numbers and
# five claims {claim, paper, loupe, agrees}; the synthetic claim (d), whose
# answer is known, must agree even in the quick run.
set -u
cd "$(dirname "$0")/.."
case "${BUILD:-build}" in *asan*) echo "SKIP under AddressSanitizer (a training run; the kernels are covered by the C tests)"; exit 0;; esac
L=${LOUPE:-$(pwd)/build/loupe}
PY=${PY:-/usr/bin/python3}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
start=$(date +%s)
"$L" reproduce stability --quick --out "$T/r" 2>"$T/err" || fail "reproduce: $(tail -3 "$T/err")"
took=$(( $(date +%s) - start ))
echo "reproduce stability --quick: ${took}s"
[ -s "$T/r/report.md" ] && [ -s "$T/r/report.json" ] || fail "report files missing"
for t in "Stability across seeds" "functional asymmetry" "τ-sweep" "Subspaces" "Synthetic model" "pooled SAE"; do
  grep -q "$t" "$T/r/report.md" || fail "report.md lacks '$t'"
done
[ -s "$T/r/topk/features.csv" ] && [ -s "$T/r/batchtopk/stability.json" ] || fail "per-feature outputs missing"
"$PY" - "$T/r/report.json" <<'PY' || fail "report.json contract"
import json, sys
j = json.load(open(sys.argv[1]))
claims = j["claims"]
assert len(claims) == 5, len(claims)
for c in claims:
    assert set(c) >= {"claim", "paper", "loupe", "agrees"}, c
    assert isinstance(c["agrees"], bool)
d = [c for c in claims if c["claim"].startswith("(d)")][0]
assert d["agrees"], d
n = j["numbers"]
for k in ("topk_frac_stable", "batchtopk_frac_stable", "synth_iso_recovered", "synth_block_angle_max_deg", "seconds"):
    assert k in n, k
assert 0 <= n["topk_frac_stable"] <= 1
PY
# the contract is < 3 minutes on an idle 2-core machine; allow for a busy one
[ "$took" -lt 400 ] || fail "--quick took ${took}s"
echo "test_reproduce_stability: ok"
