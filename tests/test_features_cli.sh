#!/usr/bin/env bash
# loupe harvest --generate and loupe features on the real model, checked
# against numpy: segment labels follow the prompt/continuation split; the
# firing counts, means, maxima, top activations and logit-lens tokens equal a
# numpy re-encoding of the store with the saved SAE and the model's weights;
# the static report has one page per feature; bad input gives one-line errors.
set -u
cd "$(dirname "$0")/.."
L=${LOUPE:-build/loupe}; S=${LOUPE_SHARED:-../shared}; PY=${PY:-/usr/bin/python3}
D=$(mktemp -d); trap 'rm -rf $D' EXIT
source tests/lib_interp_fixture.sh
make_interp_run $D --json > $D/meta.json || { echo "FAIL fixture"; exit 1; }
fail=0
$PY - $D <<'PY' || fail=1
import json, sys, os, struct
import numpy as np
sys.path.insert(0, 'tests/ref')
import st_np
D = sys.argv[1]
man = json.load(open(f'{D}/store/manifest.json'))
seg = json.load(open(f'{D}/store/segments.json'))
n = man['count']; hook = man['hooks'][0]
assert seg['names'] == ['prompt', 'generated'] and seg['count'] == n, seg
assert man.get('segments') == 'prompt,generated', man.get('segments')
tp = np.fromfile(f'{D}/store/tokens.bin', dtype='<i4').reshape(n, 3)
lab = np.fromfile(f'{D}/store/segments.bin', dtype=np.uint8)
assert lab.size == n
assert np.array_equal(lab, (tp[:, 2] > 24).astype(np.uint8)), 'segment = position > prompt length'
assert (tp[:, 2] >= 1).all() and (tp[:, 2] < 64).all()
# the prompt of sequence 0 is the start of the corpus's first document
# (decoded here with the llama2.c rules: tokenizer.bin = int32 max_len, then per piece f32 score, int32 n, bytes)
raw = open(os.environ.get('LOUPE_SHARED', '../shared') + '/models/tok512.bin', 'rb').read()
pieces, p = [], 4
while p < len(raw):
    _, k_ = struct.unpack_from('<fi', raw, p); pieces.append(raw[p + 8:p + 8 + k_]); p += 8 + k_
first = open(os.environ.get('LOUPE_SHARED', '../shared') + '/data/tinystories/train_sample.txt', encoding='utf-8').read(4000)
first = first.split('<|endoftext|>')[0].strip()
ids0 = [int(t) for t in tp[(tp[:, 1] == 0) & (tp[:, 2] <= 24), 0]]
text0 = b''.join(pieces[t] for t in ids0).decode('utf-8', 'replace').lstrip(' ')
assert len(ids0) == 24 and first.startswith(text0), (text0, first[:120])
x = np.concatenate([np.fromfile(f'{D}/store/{hook["dir"]}/{s["file"]}', dtype='<f4') for s in hook['shards']]).reshape(n, -1).astype(np.float64)
W = st_np.load(f'{D}/sae/seed0/sae_weights.safetensors')
cfg = json.load(open(f'{D}/sae/seed0/cfg.json'))
k = cfg.get('loupe', {}).get('k') or cfg.get('k')
pre = (x - W['b_dec']) @ W['W_enc'] + W['b_enc']
z = np.maximum(pre, 0)
idx = np.argsort(-z, axis=1)[:, :k]
Z = np.zeros_like(z); np.put_along_axis(Z, idx, np.take_along_axis(z, idx, 1), 1)
F = Z.shape[1]
fires = (Z > 0).sum(0); sums = Z.sum(0); mx = Z.max(0)
got = st_np.load(f'{D}/run/features/l1/features.safetensors')
bad = np.abs(got['fires'] - fires) > np.maximum(2, 0.005 * fires)
assert bad.sum() == 0, f'fires differ for {bad.sum()} features'
alive = fires > 0
assert np.allclose(got['max_act'][alive], mx[alive], rtol=1e-4, atol=1e-5), 'maxima'
mean_c = got['sum_act'][alive] / np.maximum(got['fires'][alive], 1); mean_r = sums[alive] / fires[alive]
assert np.allclose(mean_c, mean_r, rtol=2e-3), 'mean activations'
N = got['ex_row'].shape[1]
top_ok = 0
for f in np.nonzero(alive)[0]:
    want = np.sort(Z[:, f])[::-1][:20]; want = want[want > 0]
    v = got['ex_val'][f, :len(want)]
    top_ok += np.allclose(v, want, rtol=1e-4, atol=1e-5)
    rows = got['ex_row'][f, :len(want)]
    assert np.allclose(Z[rows, f], v, rtol=1e-4, atol=1e-5), f'feature {f}: stored rows do not hold the stored values'
assert top_ok >= alive.sum() - 2, f'top-20 values match for only {top_ok} of {alive.sum()}'
# context windows hold the store's tokens around the example, activation at the centre
W_, left = got['ctx_tok'].shape[2], 15
for f in np.nonzero(alive)[0][:40]:
    r = got['ex_row'][f, 0]
    assert got['ctx_tok'][f, 0, left] == tp[r, 0]
    assert abs(got['ctx_act'][f, 0, left] - got['ex_val'][f, 0]) <= 1e-4 * max(1, got['ex_val'][f, 0])
# logit lens from the llama2.c weights: header 7 int32, then emb [V, dim] ... final norm, shared classifier
m = open(os.environ.get('LOUPE_SHARED', '../shared') + '/models/stories260K.bin', 'rb').read()
dim, hid, nl, nh, nkv, V, sl = struct.unpack('<7i', m[:28]); V = abs(V)
a = np.frombuffer(m[28:], dtype='<f4')
o = 0; emb = a[o:o + V * dim].reshape(V, dim); o += V * dim
hs = dim // nh
o += nl * dim + nl * dim * dim + 2 * nl * dim * nkv * hs + nl * dim * dim + nl * dim + 3 * nl * dim * hid
g = a[o:o + dim]
lens = (W['W_dec'] * g) @ emb.T.astype(np.float64)
lens_ok = 0
for f in range(F):
    t = np.argsort(-lens[f])[:10]
    lens_ok += got['lens_pos_id'][f, 0] == t[0] and np.allclose(got['lens_pos'][f], lens[f, t], rtol=1e-3, atol=1e-4)
assert lens_ok >= F - 2, f'logit lens matches for {lens_ok} of {F}'
meta = json.load(open(f'{D}/meta.json'))
assert meta['d_sae'] == F and sum(meta['tag_counts'].values()) == F
tags = got['tag']; share = got['seg_share']
for f in np.nonzero(alive)[0]:
    rows = got['ex_row'][f, :20]; rows = rows[rows >= 0]
    sh = (lab[rows] == 1).mean()
    want = 1 if sh >= 0.8 - 1e-6 else 0 if sh <= 0.2 + 1e-6 else -2
    assert tags[f] == want, f'feature {f}: generated share {sh} tag {tags[f]}'
print(f'ok: {alive.sum()} alive features match numpy; tags {meta["tag_counts"]}; AUROC {meta["auroc_by_tag"]}')
PY
# static report: index, 2 assets, the SAE page and one page per feature
$L report --html $D/html --dir $D/run 2>$D/rep.log || { echo "FAIL report: $(cat $D/rep.log)"; fail=1; }
nf=$(find $D/html -name '*.html' -path '*/f/*' | wc -l)
[ "$nf" = 256 ] || { echo "FAIL report has $nf feature pages, want 256"; fail=1; }
grep -q 'class="tok centre on"' $D/html/sae/l1/f/3.html 2>/dev/null || grep -q 'dead feature' $D/html/sae/l1/f/3.html || { echo "FAIL feature page"; fail=1; }
mkdir -p $D/other && echo x > $D/other/file
$L report --html $D/other --dir $D/run 2>$D/err && { echo "FAIL report into a non-empty dir"; fail=1; }
grep -q "refusing" $D/err || { echo "FAIL message: $(cat $D/err)"; fail=1; }
# bad input: one line naming the problem, exit 1..127
chk() { local name=$1 needle=$2; shift 2; "$@" >/dev/null 2>$D/err; local rc=$?
  if [ $rc -eq 0 ] || [ $rc -ge 128 ] || ! grep -qF -- "$needle" $D/err || [ $(wc -l < $D/err) -gt 3 ]; then
    echo "FAIL $name: rc=$rc $(head -c 300 $D/err)"; fail=1; fi; }
chk "missing store" nostore $L features --sae $D/sae/seed0 --store $D/nostore --out $D/r2
chk "bad name" "--name" $L features --sae $D/sae/seed0 --store $D/store --out $D/r2 --name ../x
chk "quantiles" "bad options" $L features --sae $D/sae/seed0 --store $D/store --out $D/r2 --quantiles 5 --quiet
cp -r $D/store $D/badseg && head -c 100 $D/store/segments.bin > $D/badseg/segments.bin
chk "truncated segments" segments $L features --sae $D/sae/seed0 --store $D/badseg --out $D/r2 --quiet
chk "serve without run" "no feature runs" $L serve --dir $D/nothing --port 0
chk "generate prompt too long" "prompt-tokens" $L harvest --generate --data $S/data/tinystories/train_sample.txt --ctx 32 --prompt-tokens 40 --tokens 100 --out $D/g2
# a damaged feature run is refused with the file named, never half-served
cp -r $D/run $D/bad1 && sed -i 's/"window":20/"window":21/' $D/bad1/features/l1/meta.json
chk "meta/safetensors mismatch" features.safetensors $L report --html $D/h1 --dir $D/bad1
cp -r $D/run $D/bad2 && head -c 5000 $D/run/features/l1/features.safetensors > $D/bad2/features/l1/features.safetensors
chk "truncated cache" features.safetensors $L serve --dir $D/bad2 --port 0
cp -r $D/run $D/bad3 && printf 'feature,stability\n3,0.5\n999,0.1\n' > $D/bad3/features/l1/stability.csv
chk "stability id out of range" stability.csv $L report --html $D/h3 --dir $D/bad3
[ $fail -eq 0 ] && echo "test_features_cli: ok"
exit $fail
