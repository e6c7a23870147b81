#!/usr/bin/env bash
# The SAE variants through the CLI on real activations (small): train,
# sae info, eval (hiertopk at k < K) for hiertopk, kron and boost (the
# stitched base + residual SAE loads as one SAE), and bad hyper-parameters
# (heads*m*n != d_sae, K > d_sae, a base SAE of another d, a base that cannot
# be stitched, --base without --arch boost, kron in the sparsify layout)
# giving one clear error line, a non-zero exit and no SAE written.
set -u
cd "$(dirname "$0")/.."
L=$(readlink -f ${LOUPE:-build/loupe}); S=$(cd ${LOUPE_SHARED:-../shared} && pwd); PY=${PY:-/usr/bin/python3}
D=$(mktemp -d); trap 'rm -rf $D' EXIT
fail=0
die() { echo "FAIL: $*"; fail=1; }
TS=$S/data/tinystories/train_sample.txt
$L harvest --data $TS --hook blocks.2.hook_resid_post --tokens 20000 --ctx 64 --out $D/store --quiet --threads 1 2>/dev/null || die "harvest"
$L harvest --data $S/data/shakespeare/input.txt --hook blocks.2.hook_resid_post --tokens 10000 --ctx 64 --out $D/dom --quiet --threads 1 2>/dev/null || die "harvest domain"
t="--tokens 40000 --batch 256 --threads 1 --quiet --log-every 0"
ev="--data $TS --tokens 1000 --ctx 64 --json --quiet --threads 1"
num() { grep -o "\"$1\": [-0-9.e]*" | head -1 | awk '{print $2}'; }

# hiertopk: K = 16, evaluated at k = 4 and at K
$L train --store $D/store --arch hiertopk --d-sae 128 --k 16 $t --out $D/hier 2>/dev/null || die "train hiertopk"
$L sae info $D/hier/seed0 | grep -q "arch:       hiertopk (K=16" || die "sae info hiertopk"
l0=$($L eval --sae $D/hier/seed0 $ev --k 4 2>/dev/null | num l0)
awk -v a="$l0" 'BEGIN{exit !(a > 3.9 && a <= 4.0)}' || die "hiertopk --k 4: L0 $l0"
evk=$($L eval --sae $D/hier/seed0 $ev --k 4 2>/dev/null | num explained_variance)
evK=$($L eval --sae $D/hier/seed0 $ev 2>/dev/null | num explained_variance)
awk -v a="$evk" -v b="$evK" 'BEGIN{exit !(a > 0.3 && b > a)}' || die "hiertopk EV at k=4 ($evk) vs K ($evK)"

# kron: 8 heads x 2 x 8 = 128 latents, mAND and the plain product
for and in mand product; do
  $L train --store $D/store --arch kron --d-sae 128 --k 8 --heads 8 --m 2 --n 8 --kron-and $and $t --out $D/kron_$and 2>/dev/null || die "train kron $and"
  $L sae info $D/kron_$and/seed0 | grep -q "heads=8 m=2 n=8" || die "sae info kron $and"
  e=$($L eval --sae $D/kron_$and/seed0 $ev 2>/dev/null | num explained_variance)
  awk -v a="$e" 'BEGIN{exit !(a > 0.3)}' || die "kron $and EV $e"
done
tr -d ' \n\t' < $D/kron_mand/seed0/cfg.json | grep -q '"architecture":"kron"' || die "kron cfg.json"

# boost: a batchtopk base, a residual on Shakespeare, stitched
$L train --store $D/store --arch batchtopk --d-sae 128 --k 8 $t --out $D/base 2>/dev/null || die "train base"
$L train --store $D/dom --arch boost --base $D/base/seed0 --d-sae 32 --k 4 $t --out $D/boost 2>$D/err || { cat $D/err; die "train boost"; }
$L sae info $D/boost/seed0 | grep -q "arch:       boost (base latents 0..127, residual latents 128..159)" || die "sae info boost"
tr -d ' \n\t' < $D/boost/seed0/cfg.json | grep -q '"architecture":"jumprelu"' || die "boost is saved as a SAELens jumprelu"
evb=$($L eval --sae $D/boost/seed0 --data $S/data/shakespeare/input.txt --tokens 1000 --ctx 64 --json --quiet --threads 1 --skip-tokens 20000 2>/dev/null | num explained_variance)
ev0=$($L eval --sae $D/base/seed0 --data $S/data/shakespeare/input.txt --tokens 1000 --ctx 64 --json --quiet --threads 1 --skip-tokens 20000 2>/dev/null | num explained_variance)
awk -v a="$evb" -v b="$ev0" 'BEGIN{exit !(a > b)}' || die "boost EV on the domain $evb not above the base's $ev0"

# bad hyper-parameters: one line, exit != 0, nothing written
bad() { # name expected-substring args...
  [ -n "${VERBOSE:-}" ] && echo "-- $1"
  local name=$1 want=$2; shift 2
  rm -rf $D/bad
  if $L train "$@" $t --out $D/bad 2>$D/err; then die "$name: accepted"; return; fi
  [ -n "${VERBOSE:-}" ] && cat $D/err
  grep -q -- "$want" $D/err || die "$name: message '$(cat $D/err)' lacks '$want'"
  [ $(wc -l < $D/err) -le 2 ] || die "$name: more than one error line: $(cat $D/err)"
  [ ! -e $D/bad/seed0/cfg.json ] || die "$name: an SAE was written"
}
bad "kron h*m*n" "heads\*m\*n" --store $D/store --arch kron --d-sae 128 --heads 5 --m 2 --n 8
bad "kron K > F" "K=200" --store $D/store --arch kron --d-sae 128 --k 200 --m 2 --n 8
bad "hiertopk K > F" "K=129" --store $D/store --arch hiertopk --d-sae 128 --k 129
bad "kron sparsify" "sparsify" --store $D/store --arch kron --d-sae 128 --m 2 --n 8 --k 8 --format sparsify
bad "boost without base" "needs --base" --store $D/store --arch boost --d-sae 32 --k 4
bad "base without boost" "only for --arch boost" --store $D/store --arch topk --base $D/base/seed0 --d-sae 32 --k 4
bad "topk base" "cannot be stitched" --store $D/dom --arch boost --base $D/hier/seed0 --d-sae 32 --k 4
# a base SAE of another width (d_in = 32)
$PY - $D/base32 <<'PYEOF'
import sys, os, json, numpy as np
sys.path.insert(0, 'tests/ref'); import st_np
d = sys.argv[1]; os.makedirs(d)
r = np.random.default_rng(0)
st_np.save(d + '/sae_weights.safetensors', {'W_enc': r.standard_normal((32, 64)).astype(np.float32),
  'b_enc': np.zeros(64, np.float32), 'W_dec': r.standard_normal((64, 32)).astype(np.float32),
  'b_dec': np.zeros(32, np.float32), 'threshold': np.full(64, 0.1, np.float32)})
json.dump({'architecture': 'jumprelu', 'd_in': 32, 'd_sae': 64, 'hook_name': 'blocks.2.hook_resid_post'}, open(d + '/cfg.json', 'w'))
PYEOF
bad "base of another d" "d_in=32" --store $D/dom --arch boost --base $D/base32 --d-sae 32 --k 4
exit $fail
