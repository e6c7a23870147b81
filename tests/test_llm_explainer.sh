#!/usr/bin/env bash
# The LLM explainer against a fake OpenAI-compatible server on 127.0.0.1
# (started here, stops by itself): explanations come from the endpoint, every
# explained feature is scored (2 requests per feature), the key travels from
# the named environment variable, and a wrong key or a closed port gives a
# one-line error and no feature run.
set -u
cd "$(dirname "$0")/.."
L=${LOUPE:-build/loupe}; PY=${PY:-/usr/bin/python3}
D=$(mktemp -d); SRV=
trap '[ -n "$SRV" ] && kill $SRV 2>/dev/null; rm -rf $D' EXIT
source tests/lib_interp_fixture.sh
make_interp_run $D || { echo "FAIL fixture"; exit 1; }
$PY tests/ref/fake_openai.py $D/port sekrit 30 > $D/fake.out 2>&1 &
SRV=$!
for i in $(seq 50); do [ -s $D/port ] && break; sleep 0.1; done
PORT=$(cat $D/port)
fail=0
S=${LOUPE_SHARED:-../shared}
common="--sae $D/sae/seed0 --store $D/store --threads 1 --quiet --model $S/models/stories260K.bin --tokenizer $S/models/tok512.bin"
LOUPE_TEST_KEY=sekrit $L features $common --out $D/llm --name l1 --explainer-url http://127.0.0.1:$PORT/v1 \
  --explainer-key-env LOUPE_TEST_KEY --explainer-model fake --explain-max 6 2>$D/llm.log || { echo "FAIL llm run: $(cat $D/llm.log)"; fail=1; }
grep -q "12 requests" $D/llm.log || { echo "FAIL request count: $(cat $D/llm.log)"; fail=1; }
$PY - $D <<'PY' || fail=1
import json, sys, math
D = sys.argv[1]
ex = json.load(open(f'{D}/llm/features/l1/features.json'))
meta = json.load(open(f'{D}/llm/features/l1/meta.json'))
assert meta['explainer'] == 'llm:fake', meta['explainer']
llm = [e for e in ex if e['text'] and e['text'].startswith('activates on <')]
assert len(llm) == 6, [e['text'] for e in ex[:8]]
sc = [e['auroc'] for e in llm if e['auroc'] is not None]
assert len(sc) >= 5 and all(0 <= a <= 1 for a in sc), sc
# the fake scorer says 1 exactly for excerpts containing the explained token:
# positives contain it far more often than negatives
assert sum(sc) / len(sc) > 0.7, sc
rest = [e for e in ex if e['text'] and not e['text'].startswith('activates on <')]
assert all(e['text'].startswith(('fires on', 'no characteristic')) for e in rest), 'others keep the offline explanation'
print('ok: LLM AUROC', [round(a, 3) for a in sc])
PY
# wrong key: HTTP 401 named, no run written
LOUPE_TEST_KEY=wrong $L features $common --out $D/bad --explainer-url http://127.0.0.1:$PORT/v1 \
  --explainer-key-env LOUPE_TEST_KEY 2>$D/err >/dev/null && { echo "FAIL wrong key accepted"; fail=1; }
grep -q "HTTP 401" $D/err && [ $(wc -l < $D/err) -le 3 ] || { echo "FAIL 401 message: $(cat $D/err)"; fail=1; }
[ ! -e $D/bad/features ] || { echo "FAIL a run was written despite the error"; fail=1; }
# closed port and a non-http URL
kill $SRV 2>/dev/null; wait $SRV 2>/dev/null; SRV=
$L features $common --out $D/bad --explainer-url http://127.0.0.1:$PORT/v1 2>$D/err >/dev/null && { echo "FAIL closed port"; fail=1; }
grep -q "request failed" $D/err || { echo "FAIL closed-port message: $(cat $D/err)"; fail=1; }
$L features $common --out $D/bad --explainer-url file:///etc/passwd 2>$D/err >/dev/null && { echo "FAIL file URL"; fail=1; }
grep -q "http://" $D/err || { echo "FAIL file-URL message: $(cat $D/err)"; fail=1; }
[ $fail -eq 0 ] && echo "test_llm_explainer: ok"
exit $fail
