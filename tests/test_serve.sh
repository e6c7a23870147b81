#!/usr/bin/env bash
# loupe serve: path traversal in every spelling is refused without touching a
# file; 1,000 requests from a loopback load generator are all answered and the
# server's memory stays bounded; non-GET methods are refused; a non-loopback
# address is refused unless --public; the server prints its URL and stops on
# SIGTERM.
set -u
cd "$(dirname "$0")/.."
L=${LOUPE:-build/loupe}; PY=${PY:-/usr/bin/python3}
D=$(mktemp -d); SRV=
trap '[ -n "$SRV" ] && kill $SRV 2>/dev/null; rm -rf $D' EXIT
source tests/lib_interp_fixture.sh
make_interp_run $D || { echo "FAIL fixture"; exit 1; }
fail=0
# non-loopback refused, before anything is bound
for h in 0.0.0.0 10.1.2.3 ::; do
  $L serve --dir $D/run --host $h --port 0 --exit-after 2 >$D/out 2>$D/err && { echo "FAIL --host $h accepted"; fail=1; }
  grep -q "without --public" $D/err || { echo "FAIL --host $h message: $(cat $D/err)"; fail=1; }
done
# (under AddressSanitizer, a small quarantine so that freed pages are reused and RSS means what it says)
ASAN_OPTIONS="${ASAN_OPTIONS:-}:quarantine_size_mb=4" $L serve --dir $D/run --port 0 --exit-after 120 > $D/url 2>$D/serve.log &
SRV=$!
for i in $(seq 100); do grep -q http $D/url 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^loupe serve: //p' $D/url)
case "$URL" in http://127.0.0.1:*/) ;; *) echo "FAIL no URL printed: $(cat $D/url $D/serve.log)"; exit 1;; esac
code() { curl -s -o $D/body -w '%{http_code}' --path-as-is "$@"; }
[ "$(code ${URL}index.html)" = 200 ] && grep -q "Feature dashboard" $D/body || { echo "FAIL index"; fail=1; }
[ "$(code ${URL})" = 200 ] || { echo "FAIL /"; fail=1; }
[ "$(code ${URL}sae/l1/)" = 200 ] && grep -q 'class="sortable features"' $D/body || { echo "FAIL sae page"; fail=1; }
for p in '../../../../etc/passwd' '%2e%2e/%2e%2e/etc/passwd' '%2E%2E%2F%2E%2E%2Fetc%2Fpasswd' \
         '%252e%252e/%252e%252e/etc/passwd' 'sae/../../../etc/passwd' 'sae/l1/f/..%2f..%2f..%2fetc%2fpasswd' \
         'assets/../../run/features/l1/meta.json' '..%5c..%5cetc%5cpasswd' '.%2e/.%2e/etc/passwd' \
         '/etc/passwd' 'sae/l1/f/%2e%2e/%2e%2e/index.html' 'features/l1/meta.json' 'sae/l1/../l1/index.html'; do
  c=$(code "${URL}$p")
  if [ "$c" != 400 ] && [ "$c" != 404 ]; then echo "FAIL traversal $p -> $c"; fail=1; fi
  if grep -q "root:" $D/body || grep -q '"format"' $D/body; then echo "FAIL traversal $p leaked a file"; fail=1; fi
done
[ "$(code -X POST -d x ${URL}index.html)" = 405 ] || { echo "FAIL POST not refused"; fail=1; }
[ "$(code -X DELETE ${URL}index.html)" = 405 ] || { echo "FAIL DELETE not refused"; fail=1; }
[ "$(code -I ${URL}index.html)" = 200 ] || { echo "FAIL HEAD"; fail=1; }
# 1,000 requests from 8 loopback clients; memory before/after
$PY - "$URL" $SRV <<'PY' || fail=1
import sys, threading, urllib.request, urllib.error, time, random
url, pid = sys.argv[1], sys.argv[2]
def rss():
    for l in open(f'/proc/{pid}/status'):
        if l.startswith('VmRSS:'): return int(l.split()[1])
paths = ['index.html', 'sae/l1/index.html', 'assets/app.css', 'assets/app.js'] + [f'sae/l1/f/{i}.html' for i in range(256)] + ['nope.html', 'sae/l1/f/999.html']
for p in paths[:300]:   # warm up: every page once
    try: urllib.request.urlopen(url + p).read()
    except urllib.error.HTTPError: pass
before = rss()
res = {'ok': 0, 'nf': 0, 'bad': 0}
lock = threading.Lock()
def worker(seed):
    r = random.Random(seed)
    for _ in range(125):
        p = r.choice(paths)
        try:
            with urllib.request.urlopen(url + p, timeout=20) as resp:
                ok = resp.status == 200 and len(resp.read()) > 0
                k = 'ok' if ok else 'bad'
        except urllib.error.HTTPError as e:
            k = 'nf' if e.code == 404 and ('nope' in p or '999' in p) else 'bad'
        except Exception as e:
            k = 'bad'
        with lock: res[k] += 1
t0 = time.time()
ts = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
after = rss()
print(f'1000 requests in {time.time() - t0:.1f}s: {res}; RSS {before} kB -> {after} kB')
assert res['ok'] + res['nf'] == 1000 and res['bad'] == 0, res
assert after - before < 16 * 1024, 'memory grew by more than 16 MB'
PY
kill -TERM $SRV; wait $SRV; rc=$?; SRV=
[ $rc -eq 0 ] || { echo "FAIL serve exit status $rc"; fail=1; }
grep -q "stopped after" $D/serve.log || { echo "FAIL no clean stop: $(cat $D/serve.log)"; fail=1; }
[ $fail -eq 0 ] && echo "test_serve: ok"
exit $fail
