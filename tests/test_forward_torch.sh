#!/usr/bin/env bash
# Logits and every hooked activation of loupe's forward match an independent
# PyTorch implementation (tests/ref/llama_ref.py, float64) on a batch of real
# TinyStories text, within 1e-4 relative — for the llama2.c checkpoint and
# for the HF directory loupe's converter writes (read by the reference's own
# HF path with rotate-half RoPE).
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-/usr/bin/python3}; B=${BUILD:-build}
S=${LOUPE_SHARED:-../shared}
T=$(mktemp -d); trap 'rm -rf $T' EXIT
$B/tests/test_forward --dump $S/models/stories260K.bin $T/loupe.safetensors 4 128
$B/loupe convert --model $S/models/stories260K.bin --to hf --out $T/hf 2>/dev/null
$PY - $T <<'PYEOF'
import sys, numpy as np, subprocess
sys.path.insert(0, 'tests/ref'); import st_np
T = sys.argv[1]
a = st_np.load(T + '/loupe.safetensors'); a = a[0] if isinstance(a, tuple) else a
np.asarray(a['tokens'], np.int32).tofile(T + '/tok.i32')
bad = 0
for name, model in [('llama2.c', sys.argv[0] and '../shared/models/stories260K.bin'), ('hf', T + '/hf')]:
    import os
    model = os.environ.get('LOUPE_SHARED', '../shared') + '/models/stories260K.bin' if name == 'llama2.c' else model
    subprocess.check_call(['/usr/bin/python3' if not os.environ.get('PY') else os.environ['PY'], 'tests/ref/llama_ref.py', '--model', model,
                           '--tokens', T + '/tok.i32', '--B', '4', '--T', '128', '--out', T + '/ref.safetensors'])
    b = st_np.load(T + '/ref.safetensors'); b = b[0] if isinstance(b, tuple) else b
    worst, wname = 0, ''
    for k in b:
        if k not in a: print('missing in loupe:', k); bad = 1; continue
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        rel = np.abs(x - y).max() / np.abs(y).max()
        if rel > worst: worst, wname = rel, k
        if rel > 1e-4: print(f'{name}: {k} rel err {rel:.2e}'); bad = 1
    print(f'{name}: {len(b)} tensors (logits + {len(b)-1} hooks) on 4x128 real tokens, worst rel err {worst:.2e} ({wname})')
sys.exit(bad)
PYEOF
