#!/usr/bin/env bash
# SAE training steps of every architecture match an independent PyTorch
# implementation of the same math (tests/ref/sae_ref.py, float64) from the
# same initial weights and batches: 1 step and 20 steps, weights and loss
# within 1e-4 relative.
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-/usr/bin/python3}
T=$(mktemp -d); trap 'rm -rf $T' EXIT
fail=0
for arch in relu topk batchtopk jumprelu; do
  for steps in 1 20; do
    d=$T/$arch-$steps; mkdir -p $d
    ./${BUILD:-build}/tests/test_sae_grads --torch-case $arch $d $steps
    $PY tests/ref/sae_ref.py --cfg $d/cfg.json --init $d/init.safetensors --data $d/data.safetensors \
        --steps $steps --out $d/torch.safetensors
    $PY - "$d" "$arch" "$steps" <<'PYEOF' || fail=1
import sys, numpy as np
sys.path.insert(0, 'tests/ref'); import st_np
d, arch, steps = sys.argv[1:]
a = st_np.load(d + '/loupe.safetensors'); b = st_np.load(d + '/torch.safetensors')
a = a[0] if isinstance(a, tuple) else a; b = b[0] if isinstance(b, tuple) else b
worst = 0; bad = []
names = ['W_enc', 'b_enc', 'W_dec', 'b_dec'] + (['log_threshold'] if arch == 'jumprelu' else []) + (['theta'] if arch == 'batchtopk' else [])
for n in names:
    x, y = np.asarray(a[n], np.float64), np.asarray(b[n], np.float64)
    rel = np.abs(x - y).max() / max(np.abs(y).max(), 1e-12)
    worst = max(worst, rel)
    if rel > 1e-4: bad.append(f'{n}: {rel:.2e}')
l = [float(v) for v in open(d + '/loupe_loss0.txt').read().split()]
lt = float(np.asarray(b['loss'])[0]); rl = abs(l[0] - lt) / abs(lt)
if rl > 1e-4: bad.append(f'loss0 {l[0]} vs {lt}')
print(f'{arch:10s} steps={steps:>2}: max weight rel err {worst:.2e}, loss0 rel err {rl:.1e}' + (' FAIL ' + '; '.join(bad) if bad else ''))
sys.exit(1 if bad else 0)
PYEOF
  done
done
exit $fail
