#!/usr/bin/env bash
# scripts/get-models.sh — download the default model, tokenizer and corpora
# loupe uses (tests and CI read the same files from ../shared/ instead).
# Files go to ${LOUPE_CACHE:-$HOME/.cache/loupe}/{models,data}/..., where
# loupe looks for them when ../shared/ is absent; each is checked by size or
# SHA-256 and skipped when already present.
set -euo pipefail
DEST=${LOUPE_CACHE:-$HOME/.cache/loupe}
HF=https://huggingface.co
fetch() { # url, path, sha256 (or "-")
  local url=$1 out=$DEST/$2 sum=$3
  if [ -f "$out" ] && { [ "$sum" = - ] || echo "$sum  $out" | sha256sum -c --quiet 2>/dev/null; }; then
    echo "ok    $2"; return; fi
  mkdir -p "$(dirname "$out")"
  echo "fetch $2"
  curl -fL --retry 3 -o "$out.part" "$url"
  if [ "$sum" != - ]; then echo "$sum  $out.part" | sha256sum -c --quiet || { echo "checksum mismatch: $url"; rm -f "$out.part"; exit 1; }; fi
  mv "$out.part" "$out"
}
fetch $HF/karpathy/tinyllamas/resolve/main/stories260K/stories260K.bin models/stories260K.bin \
  b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696
fetch $HF/karpathy/tinyllamas/resolve/main/stories260K/tok512.bin models/tok512.bin \
  037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312
fetch $HF/karpathy/tinyllamas/resolve/main/stories260K/tok512.model models/tok512.model -
# TinyStories: loupe's default corpus is the first 2 MiB of the training split
if [ ! -f "$DEST/data/tinystories/train_sample.txt" ]; then
  fetch $HF/datasets/roneneldan/TinyStories/resolve/main/TinyStoriesV2-GPT4-valid.txt data/tinystories/valid.txt -
  head -c 2097152 "$DEST/data/tinystories/valid.txt" > "$DEST/data/tinystories/train_sample.txt"
fi
fetch https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt data/shakespeare/input.txt -
fetch https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl data/gsm8k/test.jsonl -
echo "done: $DEST (loupe finds it when ../shared/ is absent; or set LOUPE_SHARED=$DEST)"
