#!/usr/bin/env bash
# Steering hooks match an independent PyTorch implementation: loupe's logits
# with SAE-feature interventions (add at a position range, remove a feature,
# rescale through the SAE, add at generated positions only, two layers at
# once) against tests/ref/steer_ref.py on llama_ref.py's float64 forward,
# within 1e-4 relative; the additive case also through llama_ref.py's own
# --intervene HOOK:FILE.
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-/usr/bin/python3}; B=${BUILD:-build}
S=${LOUPE_SHARED:-../shared}
T=$(mktemp -d); trap 'rm -rf $T' EXIT
$B/tests/test_steer --dump $S/models/stories260K.bin $S/models/tok512.bin $T
$PY tests/ref/steer_ref.py --model $S/models/stories260K.bin --dir $T
