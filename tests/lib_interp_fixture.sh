# lib_interp_fixture.sh — sourced by the feature/dashboard tests: a small
# two-segment run in $1 (store from `harvest --generate`, a TopK SAE, and
# `loupe features`), about 5 s on one thread. Not a test itself.
make_interp_run() {
  local D=$1 L=${LOUPE:-build/loupe} S=${LOUPE_SHARED:-../shared}
  $L harvest --generate --data $S/data/tinystories/train_sample.txt --model $S/models/stories260K.bin \
    --tokenizer $S/models/tok512.bin --hook blocks.1.hook_resid_post --tokens 16000 --ctx 64 \
    --prompt-tokens 24 --batch 32 --threads 1 --out $D/store --quiet 2>$D/harvest.log || { cat $D/harvest.log; return 1; }
  $L train --store $D/store --arch topk --d-sae 256 --k 8 --tokens 120000 --batch 512 --seeds 0 \
    --out $D/sae --threads 1 --quiet 2>$D/train.log || { cat $D/train.log; return 1; }
  $L features --sae $D/sae/seed0 --store $D/store --out $D/run --name l1 --threads 1 --quiet \
    --model $S/models/stories260K.bin --tokenizer $S/models/tok512.bin "${@:2}" 2>$D/features.log \
    || { cat $D/features.log; return 1; }
}
