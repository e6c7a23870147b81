#!/usr/bin/env bash
# tests/test_tokenizer_sp.sh — the C tokenizer against python3-sentencepiece
# (tok512.model, the same vocab as tok512.bin) on every story of
# five_stories.txt and train_sample.txt, BOS first. Stories are split on
# <|endoftext|> and stripped of surrounding whitespace (both sides alike).
#
# The one principled difference: sentencepiece's normaliser (remove_extra_
# whitespaces) collapses runs of spaces and strips leading/trailing spaces;
# llama2.c's encoder takes the text as is. So the check is exact both ways:
# C(normalised story) must equal sentencepiece(story) for every story, and
# C(raw story) must differ exactly for the stories that normalisation changes
# (none in five_stories.txt; the double-space stories in train_sample.txt).
# Env: BUILD (default build), LOUPE_SHARED, PY (default /usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PY:-/usr/bin/python3}
export LOUPE_SHARED=${LOUPE_SHARED:-$(cd .. && pwd)/shared}
bin=$BUILD/tests/test_tokenizer
model=$LOUPE_SHARED/models/tok512.model
[ -x "$bin" ] || { echo "missing $bin: run make $bin"; exit 1; }
"$PY" -c "import sentencepiece" 2>/dev/null || { echo "$PY lacks sentencepiece: apt-get install python3-sentencepiece"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in five_stories.txt train_sample.txt; do
  src=$LOUPE_SHARED/data/tinystories/$f
  "$bin" --encode "$src" > "$tmp/raw.ids"
  "$PY" tests/ref/sp_encode.py normalise "$src" "$tmp/norm.txt"
  "$bin" --encode "$tmp/norm.txt" > "$tmp/norm.ids"
  "$PY" tests/ref/sp_encode.py compare "$model" "$src" "$tmp/raw.ids" "$tmp/norm.ids"
done
