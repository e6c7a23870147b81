#!/usr/bin/env bash
# loupe reproduce autointerp --quick: the report has the per-layer tag table,
# the AUROC-by-tag table next to the paper's numbers and three claims, tag
# counts add up to the latents of each layer, and the run it leaves is a
# valid dashboard run. (~25 s; skipped in the AddressSanitizer pass, where the
# same code is covered by the feature tests.)
set -u
cd "$(dirname "$0")/.."
case "${BUILD:-build}" in *asan*) echo "SKIP under AddressSanitizer"; exit 0;; esac
L=${LOUPE:-build/loupe}; PY=${PY:-/usr/bin/python3}
D=$(mktemp -d); trap 'rm -rf $D' EXIT
$L reproduce autointerp --quick --out $D/r --threads 1 2>$D/log || { echo "FAIL: $(tail -3 $D/log)"; exit 1; }
$PY - $D/r <<'PY' || exit 1
import json, sys
r = json.load(open(sys.argv[1] + '/report.json'))
claims = r['claims']
assert len(claims) == 3 and all({'claim', 'paper', 'loupe', 'agrees'} <= set(c) for c in claims), claims
tabs = [b for b in r['blocks'] if isinstance(b, dict) and 'rows' in b]
t = tabs[0]
rows = t['rows']
assert len(rows) == 2, rows
for row in rows:
    assert int(row[1]) + int(row[2]) + int(row[3]) + int(row[4]) == 256, row
paper = tabs[1]['rows']
assert [x[1] for x in paper] == ['0.921', '0.653', '0.558'], paper
for x in paper:
    a = float(x[2])
    assert 0.5 < a <= 1.0, x
md = open(sys.argv[1] + '/report.md').read()
assert 'Claims' in md and 'AUROC' in md
print('ok', [c['loupe'] for c in claims])
PY
$L report --html $D/html --dir $D/r/work/run 2>/dev/null && [ -f $D/html/sae/L3/f/0.html ] || { echo "FAIL dashboard of the run"; exit 1; }
echo "test_reproduce_autointerp: ok"
