#!/usr/bin/env bash
# The flow / steering / lens commands end to end on stories260K, their bad-
# input errors, and `loupe reproduce flow|steering --quick` reports:
#   loupe train --sites all (one harvest, 15 SAEs, sites.json, distinct init seeds)
#   loupe flow (class table, flow.json, graph JSON/DOT, --validate)
#   loupe steer (generation, --eval sweep table, multi-layer --chain)
#   loupe lens (decoder row, vector file)
set -u
PY=${PY:-/usr/bin/python3}
cd "$(dirname "$0")/.."
L=${LOUPE:-build/loupe}
S=${LOUPE_SHARED:-../shared}
D=$S/data/tinystories/train_sample.txt
T=$(mktemp -d); trap 'rm -rf $T' EXIT
fail=0
ok()   { echo "ok   $1"; }
bad()  { echo "FAIL $1"; fail=1; }
# expect_err NAME PATTERN CMD...: non-zero exit and PATTERN in stderr
expect_err() {
  local name=$1 pat=$2; shift 2
  if "$@" >$T/out 2>$T/err; then bad "$name: exit 0"; return; fi
  if grep -q -- "$pat" $T/err; then ok "$name"; else bad "$name: stderr was: $(cat $T/err)"; fi
}
export LOUPE_THREADS=1

# ---- train --sites ----------------------------------------------------------
$L train --sites all --data $D --harvest-tokens 20000 --out $T/sites --d-sae 128 --k 4 --tokens 40000 --quiet >/dev/null 2>$T/err \
  && ok "train --sites all" || { bad "train --sites all: $(tail -3 $T/err)"; exit 1; }
n=$(ls -d $T/sites/blocks.*/seed* | wc -l)
[ "$n" = 15 ] && ok "15 site SAEs" || bad "found $n site SAEs"
grep -q '"init_seed":	15000' $T/sites/sites.json && ok "distinct init seeds in sites.json" || bad "sites.json: $(head -c 300 $T/sites/sites.json)"
[ ! -e $T/sites/blocks.0.hook_resid_post/seed0 ] && ok "no shared seed0 directory" || bad "seed0 directory exists"
expect_err "train --seeds out of range" "0..999" $L train --sites all --data $D --out $T/x --seeds 1000
expect_err "train --sites bad hook" "blocks.9" $L train --sites blocks.9.hook_mlp_out --data $D --out $T/x2

# ---- flow -----------------------------------------------------------------------
$L flow --saes $T/sites --out $T/flow --features 4:3,2:0 --lens --validate --data $D --tokens 3000 >$T/flow.txt 2>$T/err \
  && ok "flow" || bad "flow: $(cat $T/err)"
grep -q "translated" $T/flow.txt && grep -q "nowhere" $T/flow.txt && ok "flow class and validation tables" || bad "flow output: $(head $T/flow.txt)"
for f in flow.json graph_L4_f3.json graph_L4_f3.dot graph_L2_f0.json; do
  [ -s $T/flow/$f ] && ok "flow wrote $f" || bad "flow did not write $f"
done
$PY - $T/flow <<'PYEOF' && ok "flow.json / graph JSON parse" || bad "flow JSON"
import json, sys
d = sys.argv[1]
f = json.load(open(d + '/flow.json')); g = json.load(open(d + '/graph_L4_f3.json'))
assert len(f['layers']) == 5 and len(f['layers'][4]['features']) == 128
assert g['nodes'][0]['id'] == 'R4_3' and len(g['edges']) == 3 * 4 + 2
PYEOF
expect_err "flow: feature out of range" "out of range" $L flow --saes $T/sites --features 4:128
expect_err "flow: layer out of range" "out of range" $L flow --saes $T/sites --features 5:0
expect_err "flow: not a site directory" "not a directory" $L flow --saes $T/nope
expect_err "flow: bad threshold" "not a cosine" $L flow --saes $T/sites --thr-res 2
cp -r $T/sites $T/mixed
rm -rf $T/mixed/blocks.1.hook_mlp_out/seed*
mkdir -p $T/mixed/blocks.1.hook_mlp_out && cp -r $T/sites/blocks.1.hook_resid_post/seed* $T/mixed/blocks.1.hook_mlp_out/
sed -i 's#blocks.1.hook_mlp_out/seed[0-9]*#blocks.1.hook_mlp_out/'$(basename $(ls -d $T/sites/blocks.1.hook_resid_post/seed*))'#' $T/mixed/sites.json
expect_err "flow: SAE at the wrong site" "trained at blocks.1.hook_resid_post" $L flow --saes $T/mixed

# ---- steer ----------------------------------------------------------------------
R4=$(ls -d $T/sites/blocks.4.hook_resid_post/seed*)
$L steer --sae $R4 --feature 3 --alpha 6 --steps 40 --compare >$T/steer.txt 2>$T/err && grep -q "^steered:" $T/steer.txt \
  && ok "steer (single site)" || bad "steer: $(cat $T/err)"
[ -s $R4/feature_stats.json ] && ok "Zbar cached next to the SAE" || bad "no feature_stats.json"
$L steer --saes $T/sites --layer 4 --feature 3 --chain exp --eval --targets the,a --samples 3 --alphas 0,4 --steps 32 --json >$T/ev.json 2>$T/err \
  && ok "steer --eval along a flow chain" || bad "steer --eval: $(cat $T/err)"
$PY -c "import json,sys; d=json.load(open('$T/ev.json')); assert d['sites']==5 and len(d['rows'])==3; r=d['rows']; assert r[0]['rate']==r[1]['rate'] and r[0]['coherence']==r[1]['coherence'], r" \
  && ok "steer --eval table (alpha 0 = unsteered, 5 chain sites)" || bad "steer --eval JSON: $(cat $T/ev.json)"
expect_err "steer: feature out of range" "out of range" $L steer --sae $R4 --feature 128 --steps 20
expect_err "steer: position spec selects nothing (BOS-only prompt)" "select nothing" $L steer --sae $R4 --feature 3 --positions prompt --steps 20
expect_err "steer: position range past the end" "select nothing" $L steer --sae $R4 --feature 3 --positions 100:200 --steps 20
expect_err "steer: bad position spec" "position spec" $L steer --sae $R4 --feature 3 --positions later
expect_err "steer: SAE at another site" "trained at blocks.4.hook_resid_post" $L steer --sae $R4 --hook blocks.4.hook_mlp_out --feature 3 --steps 20
cp $S/models/stories260K.bin $T/other.bin && printf '\x00\x00\x80\x3f' | dd of=$T/other.bin bs=1 seek=2000 conv=notrunc 2>/dev/null
expect_err "steer: SAE of another model" "trained on model" $L steer --sae $R4 --model $T/other.bin --feature 3 --steps 20
expect_err "steer: --eval without targets" "targets" $L steer --sae $R4 --feature 3 --eval
expect_err "steer: --chain without --saes" "needs --saes" $L steer --sae $R4 --feature 3 --chain exp

# ---- lens ----------------------------------------------------------------------------
$L lens --sae $R4 --feature 3 --top 5 >$T/lens.txt 2>$T/err && grep -q promoted $T/lens.txt && ok "lens of a decoder row" || bad "lens: $(cat $T/err)"
head -c 256 /dev/zero > $T/v.f32 && $L lens --vector $T/v.f32 --json >/dev/null 2>$T/err && ok "lens of a vector file" || bad "lens --vector: $(cat $T/err)"
head -c 100 /dev/zero > $T/short.f32
expect_err "lens: vector of the wrong size" "want 64 float32" $L lens --vector $T/short.f32
expect_err "lens: feature out of range" "out of range" $L lens --sae $R4 --feature 999
expect_err "lens: two directions" "exactly one" $L lens --sae $R4 --feature 1 --vector $T/v.f32

# ---- reproduce --quick (the normal build; ~40 s here, several minutes under sanitizers) ----
case "$L" in *asan*) echo "skip reproduce --quick under sanitizers"; exit $fail ;; esac
for x in flow steering; do
  if $L reproduce $x --quick --out $T/r_$x >/dev/null 2>$T/err; then
    $PY -c "import json; d=json.load(open('$T/r_$x/report.json')); assert d['claims'] and all('agrees' in c for c in d['claims'])" \
      && grep -q "Claims" $T/r_$x/report.md && ok "reproduce $x --quick report" || bad "reproduce $x report content"
  else bad "reproduce $x --quick: $(tail -3 $T/err)"; fi
done
exit $fail
