#!/usr/bin/env bash
# The SAE variants' training steps match an independent dense PyTorch
# implementation (tests/ref/sae_variants_ref.py, float64): HierarchicalTopK
# against the paper's reference formula, KronSAE with mAND and with the plain
# product, and the residual ("SAE Boost") SAE with its target and frozen zero
# decoder bias. 1 step and 20 steps from the same initial weights and batches:
# weights, θ and the step-0 loss within 1e-4 relative. (One Python process
# for all cases: importing torch dominates otherwise.)
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-/usr/bin/python3}
T=$(mktemp -d); trap 'rm -rf $T' EXIT
for v in hiertopk kron kron_product residual; do
  for steps in 1 20; do
    mkdir -p $T/$v-$steps
    ./${BUILD:-build}/tests/test_sae_variants --torch-case $v $T/$v-$steps $steps
  done
done
$PY - "$T" <<'PYEOF'
import json, os, sys
import numpy as np
sys.path.insert(0, 'tests/ref')
import st_np, sae_variants_ref as ref
T = sys.argv[1]
fail = ref.selftest() != 0
for v in ('hiertopk', 'kron', 'kron_product', 'residual'):
    for steps in (1, 20):
        d = f'{T}/{v}-{steps}'
        cfg = json.load(open(d + '/cfg.json'))
        init = st_np.load(d + '/init.safetensors')
        data = st_np.load(d + '/data.safetensors')
        b = ref.run(cfg, init, np.asarray(data['x']), np.asarray(data['t']) if 't' in data else None, steps)
        a = st_np.load(d + '/loupe.safetensors')
        worst, bad = 0.0, []
        for n in ['W_enc', 'b_enc', 'W_dec', 'b_dec'] + (['theta'] if v == 'residual' else []):
            x, y = np.asarray(a[n], np.float64), np.asarray(b[n], np.float64)
            if x.shape != y.shape:
                bad.append(f'{n}: shape {x.shape} vs {y.shape}'); continue
            m = np.abs(y).max()
            rel = np.abs(x - y).max() / m if m > 0 else np.abs(x - y).max()
            worst = max(worst, rel)
            if rel > 1e-4: bad.append(f'{n}: {rel:.2e}')
        l = [float(t) for t in open(d + '/loupe_loss0.txt').read().split()]
        lt = float(b['loss'][0]); rl = abs(l[0] - lt) / abs(lt)
        if rl > 1e-4: bad.append(f'loss0 {l[0]} vs {lt}')
        print(f'{v:13s} steps={steps:>2}: max weight rel err {worst:.2e}, loss0 rel err {rl:.1e}'
              + (' FAIL ' + '; '.join(bad) if bad else ''))
        fail |= bool(bad)
sys.exit(1 if fail else 0)
PYEOF
