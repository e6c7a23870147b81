#!/usr/bin/env bash
# Greedy decoding of stories260K + tok512 reproduces the four reference
# strings of ../shared/models/README.md exactly, from the llama2.c file and
# from the HF directory loupe converts it to.
set -u
cd "$(dirname "$0")/.."
L=${LOUPE:-build/loupe}; S=${LOUPE_SHARED:-../shared}
M=$S/models/stories260K.bin; T=$S/models/tok512.bin
D=$(mktemp -d); trap 'rm -rf $D' EXIT
$L convert --model $M --to hf --out $D/hf 2>/dev/null || { echo "convert failed"; exit 1; }
lily="Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.
Lily"
fail=0; n=0
check() {
  for model in $M $D/hf; do
    n=$((n+1))
    out=$($L generate --model $model --tokenizer $T --prompt "$1" --steps 64 --temperature 0)
    if [ "$out" != "$2" ]; then echo "MISMATCH [$1] ($model): $out"; fail=1; fi
  done
}
check "" "$lily"
check "Once upon a time" "$lily"
check "The cat sat on the mat" "The cat sat on the match. The cat was very happy. The cat was very happy. The cat was very happy. The cat and the cat played together. They were very happy. They played together.
One"
check "Tom and his dog" "Tom and his dog, Max, who lived in a big house. They liked to play with their toys and run around the house. They liked to play with their toys and sing.
On"
# seeded sampling is reproducible and differs from greedy
a=$($L generate --prompt "Tom and his dog" --steps 40 --temperature 0.9 --top-p 0.9 --seed 7)
b=$($L generate --prompt "Tom and his dog" --steps 40 --temperature 0.9 --top-p 0.9 --seed 7)
c=$($L generate --prompt "Tom and his dog" --steps 40 --temperature 0.9 --top-p 0.9 --seed 8)
[ "$a" = "$b" ] || { echo "same seed, different text"; fail=1; }
[ "$a" != "$c" ] || { echo "different seeds, same text"; fail=1; }
echo "greedy: $n runs checked"
exit $fail
