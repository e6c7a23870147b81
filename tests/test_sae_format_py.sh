#!/usr/bin/env bash
# tests/test_sae_format_py.sh — loupe's SAE files against an independent numpy
# implementation (tests/ref/write_sae_py.py, its own safetensors code):
#  1. numpy writes SAELens (pre-6.0 and 6.x cfg.json, f32/bf16, jumprelu with
#     apply_b_dec_to_input=false, topk with rescale_acts_by_decoder_norm) and
#     sparsify (f32/f16, old and new cfg.json) directories from one set of random
#     weights; loupe loads each and encodes a batch; the latents must equal numpy's
#     encoding by the library's own math (1e-5).
#  2. loupe writes every architecture in both layouts (norm_scale 1.7 folded in);
#     numpy reads them, checks cfg.json/tensors and that the file's math gives
#     loupe's in-memory latents (of x·s, divided by s).
# Env: BUILD (default build), PY (default /usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PY:-/usr/bin/python3}
bin=$BUILD/tests/test_sae_format
[ -x "$bin" ] || { echo "missing $bin: run make $bin"; exit 1; }
"$PY" -c "import numpy" 2>/dev/null || { echo "$PY lacks numpy: apt-get install python3-numpy"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" tests/ref/write_sae_py.py write "$tmp"
for d in "$tmp"/py_*/; do
  n=$(basename "$d")
  "$bin" --encode "$tmp/$n" "$tmp/x.f32" "$tmp/out_$n.f32"
done
for fmt in saelens sparsify; do
  for arch in relu topk batchtopk jumprelu; do
    "$bin" --write "$tmp/lp_${fmt}_$arch" "$fmt" "$arch" "$tmp/x.f32" "$tmp/lpz_${fmt}_$arch.f32"
  done
done
"$PY" tests/ref/write_sae_py.py check "$tmp"
