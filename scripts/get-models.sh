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
# (a byte-range request: the whole split is ~1.9 GB)
ts=$DEST/data/tinystories/train_sample.txt
if [ ! -f "$ts" ]; then
  mkdir -p "$(dirname "$ts")"; echo "fetch data/tinystories/train_sample.txt (first 2 MiB)"
  curl -fL --retry 3 -r 0-2097151 -o "$ts.part" $HF/datasets/roneneldan/TinyStories/resolve/main/TinyStories-train.txt
  mv "$ts.part" "$ts"
  echo "5352b299dcb1a32898b2d779b145b5a05f3e1265953fd21c264c9f9f9c9ae33d  $ts" | sha256sum -c --quiet 2>/dev/null ||
    echo "note: train_sample.txt differs from the copy loupe's README numbers were measured on"
fi
python3 -c 1 2>/dev/null; five=$DEST/data/tinystories/five_stories.txt
[ -f "$five" ] || awk 'BEGIN{RS="<\\|endoftext\\|>"; ORS="<|endoftext|>"} NR<=5' "$ts" > "$five"
fetch https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt data/shakespeare/input.txt -
fetch https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl data/gsm8k/test.jsonl -
echo "done: $DEST (loupe finds it when ../shared/ is absent; or set LOUPE_SHARED=$DEST)"
