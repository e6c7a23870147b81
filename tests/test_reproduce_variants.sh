#!/usr/bin/env bash
# `loupe reproduce hierarchical|kronsae|boost --quick` run end to end and
# write report.md and report.json with their tables and claims (each claim
# {"claim","paper","loupe","agrees"}); the numbers are finite. One thread:
# the quick runs are small enough that threads mostly add synchronisation.
set -u
cd "$(dirname "$0")/.."
L=$(readlink -f ${LOUPE:-build/loupe}); PY=${PY:-/usr/bin/python3}
D=$(mktemp -d); trap 'rm -rf $D' EXIT
fail=0
for name in hierarchical kronsae boost; do
  t0=$(date +%s)
  if ! $L reproduce $name --quick --threads 1 --out $D/$name 2>$D/$name.log; then
    echo "FAIL: reproduce $name"; tail -5 $D/$name.log; fail=1; continue
  fi
  echo "$name: $(( $(date +%s) - t0 ))s, $(tail -1 $D/$name.log)"
  $PY - $D/$name <<'PYEOF' || fail=1
import json, math, sys
d = sys.argv[1]
md = open(d + '/report.md').read()
j = json.load(open(d + '/report.json'))
bad = []
claims = j.get('claims', [])
if len(claims) < 3: bad.append(f'{len(claims)} claims')
for c in claims:
    if not all(k in c for k in ('claim', 'paper', 'loupe', 'agrees')) or not isinstance(c['agrees'], bool):
        bad.append(f'claim fields {c}')
if '| claim | paper | loupe | agrees |' not in md: bad.append('no claims table in report.md')
if md.count('\n|') < 8: bad.append('no tables in report.md')
nums = j.get('numbers', {})
if not nums or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in nums.values()):
    bad.append(f'numbers {nums}')
print(('FAIL ' + '; '.join(bad)) if bad else f'  {len(claims)} claims, {len(nums)} numbers')
sys.exit(1 if bad else 0)
PYEOF
done
exit $fail
