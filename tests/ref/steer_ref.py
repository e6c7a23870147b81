#!/usr/bin/python3
"""steer_ref.py - an independent PyTorch (float64) implementation of loupe's SAE-feature
interventions, run through tests/ref/llama_ref.py's forward, for tests/test_steer_torch.sh.

Usage: steer_ref.py --model M --dir DIR
  DIR holds what `test_steer --dump` wrote: spec.json (cases), tok.i32 ([B,T] tokens), sae1/ and
  sae2/ (SAELens layout: W_enc [d_in,d_sae], b_enc, W_dec [d_sae,d_in], b_dec; TopK k in cfg.json)
  and loupe's logits per case (<name>.f32, [B,T,V] float32).  For each case the same
  intervention is applied here and the logits compared: max |loupe - ref| / max |ref| <= 1e-4.
  Also checks case add_range through llama_ref.py's own command line (--intervene HOOK:FILE with a
  full [B,T,D] tensor of the added vectors).  Exit status 1 on any mismatch.

Interventions (rows = non-BOS positions selected by the spec; z = TopK(ReLU(pre)), pre =
(x - b_dec) W_enc + b_enc):
  add      z'_f = z_f + coef * zbar        rescale  z'_f = coef * z_f
  error    h' = h + (z'_f - z_f) W_dec[f]   sae      h' = z' W_dec + b_dec
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402
import st_np  # noqa: E402

POS_ALL, POS_PROMPT, POS_GEN, POS_RANGE = 0, 1, 2, 3


def load_sae(d):
    t = st_np.load(os.path.join(d, "sae_weights.safetensors"))
    t = t[0] if isinstance(t, tuple) else t
    with open(os.path.join(d, "cfg.json")) as f:
        cfg = json.load(f)
    k = cfg.get("k") or cfg.get("loupe", {}).get("k")
    g = lambda n: torch.from_numpy(np.asarray(t[n], np.float64))  # noqa: E731
    return dict(W_enc=g("W_enc"), b_enc=g("b_enc"), W_dec=g("W_dec"), b_dec=g("b_dec"), k=int(k))


def encode(sae, x):
    pre = (x - sae["b_dec"]) @ sae["W_enc"] + sae["b_enc"]
    a = torch.relu(pre)
    v, i = torch.topk(a, sae["k"], dim=-1)
    z = torch.zeros_like(a)
    z.scatter_(-1, i, v)
    return z


def selected(pos, n_prompt, tokens, bos):
    B, T = tokens.shape
    p = torch.arange(T)[None, :].expand(B, T)
    kind = pos["kind"]
    if kind == POS_ALL:
        sel = torch.ones(B, T, dtype=torch.bool)
    elif kind == POS_PROMPT:
        sel = p < n_prompt
    elif kind == POS_GEN:
        sel = p >= n_prompt
    else:
        sel = (p >= pos["lo"]) & (p <= pos["hi"])
    return sel & (tokens != bos)


def make_hook(case, terms, sae, sel):
    def hook(x):
        z = encode(sae, x)
        zp = z.clone()
        for t in terms:
            f = t["feature"]
            if t["op"] == "add":
                zp[..., f] = zp[..., f] + t["coef"] * t["zbar"]
            else:
                zp[..., f] = t["coef"] * zp[..., f]
        if case["variant"] == "error":
            new = x + (zp - z) @ sae["W_dec"]
        else:
            new = zp @ sae["W_dec"] + sae["b_dec"]
        return torch.where(sel[..., None], new, x)
    return hook


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    with open(os.path.join(a.dir, "spec.json")) as f:
        spec = json.load(f)
    B, T, bos = spec["B"], spec["T"], spec["bos"]
    tokens = torch.from_numpy(np.fromfile(os.path.join(a.dir, "tok.i32"), dtype="<i4").astype(np.int64)).view(B, T)
    model = llama_ref.load_model(a.model)
    saes = {k: (load_sae(os.path.join(a.dir, v["dir"])), v["hook"]) for k, v in spec["saes"].items()}
    V = model.cfg["vocab_size"]
    bad = 0
    for case in spec["cases"]:
        sel = selected(case["pos"], case["n_prompt"], tokens, bos)
        hooks = {}
        by_sae = {}
        for t in case["terms"]:
            by_sae.setdefault(t["sae"], []).append(t)
        for k, terms in by_sae.items():
            sae, hook = saes[k]
            hooks.setdefault(hook, []).append(make_hook(case, terms, sae, sel))
        with torch.no_grad():
            ref = llama_ref.forward(model, tokens, hooks, torch.float64)
            clean = llama_ref.forward(model, tokens, None, torch.float64)
        got = torch.from_numpy(np.fromfile(os.path.join(a.dir, case["name"] + ".f32"), dtype="<f4").astype(np.float64)).view(B, T, V)
        rel = float((got - ref).abs().max() / ref.abs().max())
        moved = float((ref - clean).abs().max() / clean.abs().max())
        ok = rel <= 1e-4 and moved > 1e-3  # the intervention must matter, and match
        print(f"{case['name']:<26} rel err {rel:.2e}  (intervention moved logits by {moved:.2e})  {'ok' if ok else 'FAIL'}")
        bad |= not ok
        if case["name"] == "add_range":
            # the same additive intervention through llama_ref.py's own --intervene
            t = case["terms"][0]
            sae, hook = saes[t["sae"]]
            vec = (t["coef"] * t["zbar"]) * sae["W_dec"][t["feature"]]
            full = torch.where(sel[..., None], vec.expand(B, T, -1), torch.zeros(B, T, vec.numel(), dtype=torch.float64))
            fpath = os.path.join(a.dir, "intervene.f32")
            full.numpy().astype("<f4").tofile(fpath)
            out = os.path.join(a.dir, "cli.safetensors")
            subprocess.check_call([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "llama_ref.py"),
                                   "--model", a.model, "--tokens", os.path.join(a.dir, "tok.i32"), "--B", str(B), "--T",
                                   str(T), "--intervene", f"{hook}:{fpath}", "--out", out])
            cl = st_np.load(out)
            cl = cl[0] if isinstance(cl, tuple) else cl
            cli = torch.from_numpy(np.asarray(cl["logits"], np.float64))
            rel2 = float((got - cli).abs().max() / cli.abs().max())
            ok2 = rel2 <= 1e-4
            print(f"{'add_range (--intervene)':<26} rel err {rel2:.2e}  {'ok' if ok2 else 'FAIL'}")
            bad |= not ok2
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
