#!/usr/bin/env bash
# tests/run.sh — loupe's test runner: every build/tests/test_* binary and every
# tests/test_*.sh script is one test; the last line is "N passed, M failed".
# Env: BUILD (default build), LOUPE_SHARED (default ../shared), PY (python with
# torch; default Debian's /usr/bin/python3), ONLY=regex to select tests by name.
set -u
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build}
export LOUPE_SHARED=${LOUPE_SHARED:-$(cd .. && pwd)/shared}
export PY=${PY:-/usr/bin/python3}
export LOUPE=$(pwd)/$BUILD/loupe
pass=0; fail=0; failed=()
logdir=$(mktemp -d)
for t in $BUILD/tests/test_* tests/test_*.sh; do
  [ -e "$t" ] || continue
  name=$(basename "$t" .sh)
  [ -z "${ONLY:-}" ] || echo "$name" | grep -qE -- "$ONLY" || continue
  t0=$(date +%s%N)
  if [[ "$t" == *.sh ]]; then bash "$t" > "$logdir/$name.log" 2>&1; else "$t" > "$logdir/$name.log" 2>&1; fi
  rc=$?
  ds=$(( ($(date +%s%N) - t0) / 100000000 )); dt="$((ds/10)).$((ds%10))"
  if [ $rc -eq 0 ]; then pass=$((pass+1)); echo "ok   $name (${dt}s)"
  else fail=$((fail+1)); failed+=("$name"); echo "FAIL $name (rc=$rc, ${dt}s)"; sed 's/^/     | /' "$logdir/$name.log" | tail -25; fi
done
rm -rf "$logdir"
[ $fail -eq 0 ] || echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
