#!/usr/bin/env bash
# The dashboard end to end in headless Chromium (tests/browser/dashboard.mjs):
# index → SAE → sort → search → feature page with highlighted tokens and the
# SVG histogram → screenshot. Needs Debian's chromium and `npm ci` in
# tests/browser (.ci/run does both); skipped with a note elsewhere, but under
# CI a missing piece is a failure.
set -u
cd "$(dirname "$0")/.."
L=${LOUPE:-build/loupe}
CHR=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHR" ] || ! command -v node >/dev/null || [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "browser test needs $CHR, node and tests/browser/node_modules (cd tests/browser && npm ci)"
  [ "${CI:-}" = true ] && exit 1
  echo "SKIP"; exit 0
fi
D=$(mktemp -d); SRV=
trap '[ -n "$SRV" ] && kill $SRV 2>/dev/null; rm -rf $D' EXIT
source tests/lib_interp_fixture.sh
make_interp_run $D || { echo "FAIL fixture"; exit 1; }
$L serve --dir $D/run --port 0 --exit-after 170 > $D/url 2>$D/serve.log &
SRV=$!
for i in $(seq 100); do grep -q http $D/url 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^loupe serve: //p' $D/url)
[ -n "$URL" ] || { echo "FAIL server did not start: $(cat $D/serve.log)"; exit 1; }
timeout 150 node tests/browser/dashboard.mjs "$URL" "${SCREENSHOT:-$D/feature.png}"
rc=$?
[ $rc -eq 0 ] && echo "test_browser: ok"
exit $rc
