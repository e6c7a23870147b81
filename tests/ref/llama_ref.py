#!/usr/bin/python3
"""llama_ref.py - an independent PyTorch reference of the Llama model as llama2.c runs it,
for loupe's tests.  Reads llama2.c checkpoints (.bin) and Hugging Face Llama directories
(config.json + model.safetensors, or sharded with model.safetensors.index.json).

The two formats differ in how RoPE pairs the dimensions of a head:
  llama2.c  "interleaved": pairs (2i, 2i+1), frequency index i
  HF        "half"       : pairs (i, i + head_size/2) (rotate_half), frequency index i
and the standard llama2.c -> HF conversion permutes the rows of wq and wk per head so that
both give the same outputs.  This script keeps each format's own layout and RoPE, so running
the same model through both paths checks a conversion independently.

Usage (always with Debian's /usr/bin/python3, which has torch):
  llama_ref.py --model M --tokens TOK.i32 --B B --T T --out OUT.safetensors
               [--intervene HOOK:VEC.f32]... [--zero HOOK]... [--dtype float64|float32]
      Forward pass (float64 by default) over B*T little-endian int32 tokens (row-major [B,T],
      positions 0..T-1 in every row).  Writes F32 tensors "logits" [B,T,V] and every hook
      "blocks.L.hook_{resid_pre,attn_out,resid_mid,mlp_out,resid_post}" [B,T,dim].
      --intervene adds a float32 vector (raw LE, dim floats; or B*T*dim floats for a full
      tensor) to the activation at that hook, at every position; --zero replaces it with zeros.
      Both may repeat; they run in command-line order, and the saved hook value is the one
      after the interventions (the value that flows on through the model).
  llama_ref.py --model M --generate (--prompt-tokens "1,403,..." | --prompt TEXT) --steps N
               [--decode TOK.bin] [--intervene ...] [--zero ...]
      Greedy decoding in llama2.c's convention (`run model.bin -t 0 -n N`): N forward
      passes at positions 0..N-1 counted from the first prompt token (BOS), each giving the
      next position's token, so up to N+1 ids come out, BOS included (N new tokens for a
      BOS-only prompt); stops early if BOS (1) is produced.  Prints the ids (comma-separated)
      and, with --decode (llama2.c tokenizer file), the text.  --prompt TEXT encodes with
      sentencepiece (--sp-model, default tok512.model next to the model) and prepends BOS.
  llama_ref.py --model M --to-hf OUTDIR
      Writes a Hugging Face Llama directory (config.json + model.safetensors, F32), permuting
      wq/wk rows of a llama2.c model into the rotate_half layout.
  llama_ref.py --decode TOK.bin --ids "1,403,..."
      Decodes ids with a llama2.c tokenizer file.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_np  # noqa: E402

HOOK_KINDS = ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post")
LAYER_KEYS = ("rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3")


# ----------------------------------------------------------------------------------------
# Model container: cfg dict + numpy float32/float64 weights
#   cfg: dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_size, vocab_size, seq_len,
#        norm_eps, rope_theta, rope ("interleaved" | "half"), shared_classifier
#   w:   emb [V,D], layers: list of dicts (LAYER_KEYS, y = W x with W [out,in]),
#        rms_final [D], wcls [V,D] (same array as emb when shared)
class Model:
    def __init__(self, cfg, w):
        self.cfg = cfg
        self.w = w
        self._cache = {}

    def hook_names(self):
        return [f"blocks.{l}.{k}" for l in range(self.cfg["n_layers"]) for k in HOOK_KINDS]

    def tensors(self, dtype):
        """torch tensors of all weights in dtype (cached)."""
        if dtype not in self._cache:
            t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dtype)  # noqa: E731
            w = self.w
            self._cache[dtype] = {
                "emb": t(w["emb"]),
                "layers": [{k: t(L[k]) for k in LAYER_KEYS} for L in w["layers"]],
                "rms_final": t(w["rms_final"]),
                "wcls": t(w["wcls"]),
            }
        return self._cache[dtype]


def load_llama2c(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 28:
        raise ValueError(f"{path}: too short for a llama2.c checkpoint")
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    if min(dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len) <= 0 or dim % n_heads or n_heads % n_kv:
        raise ValueError(f"{path}: bad header {dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len}")
    hs = dim // n_heads
    kvd = n_kv * hs
    data = np.frombuffer(raw, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        if pos + n > data.size:
            raise ValueError(f"{path}: file too short (need {pos + n} floats, have {data.size})")
        a = data[pos:pos + n].reshape(shape).astype(np.float32)
        pos += n
        return a

    emb = take(vocab, dim)
    rms_att = take(n_layers, dim)
    wq = take(n_layers, dim, dim)
    wk = take(n_layers, kvd, dim)
    wv = take(n_layers, kvd, dim)
    wo = take(n_layers, dim, dim)
    rms_ffn = take(n_layers, dim)
    w1 = take(n_layers, hidden, dim)
    w2 = take(n_layers, dim, hidden)
    w3 = take(n_layers, hidden, dim)
    rms_final = take(dim)
    take(seq_len, hs // 2)  # freq_cis_real (legacy, unused)
    take(seq_len, hs // 2)  # freq_cis_imag
    wcls = emb if shared else take(vocab, dim)
    if pos != data.size:
        raise ValueError(f"{path}: {data.size - pos} trailing floats after the weights")
    layers = [dict(rms_att=rms_att[l], wq=wq[l], wk=wk[l], wv=wv[l], wo=wo[l], rms_ffn=rms_ffn[l],
                   w1=w1[l], w2=w2[l], w3=w3[l]) for l in range(n_layers)]
    cfg = dict(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv,
               head_size=hs, vocab_size=vocab, seq_len=seq_len, norm_eps=1e-5, rope_theta=10000.0,
               rope="interleaved", shared_classifier=shared)
    return Model(cfg, dict(emb=emb, layers=layers, rms_final=rms_final, wcls=wcls))


def _load_hf_tensors(d):
    single = os.path.join(d, "model.safetensors")
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(single):
        return st_np.load(single)
    if os.path.exists(index):
        with open(index) as f:
            wm = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(wm.values())):
            out.update(st_np.load(os.path.join(d, shard)))
        return out
    raise FileNotFoundError(f"{d}: no model.safetensors or model.safetensors.index.json")


def load_hf(d):
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    if c.get("rope_scaling"):
        raise NotImplementedError(f"{d}: rope_scaling {c['rope_scaling']} is not supported")
    dim = int(c["hidden_size"])
    n_heads = int(c["num_attention_heads"])
    n_kv = int(c.get("num_key_value_heads") or n_heads)
    hs = int(c.get("head_dim") or dim // n_heads)
    n_layers = int(c["num_hidden_layers"])
    tie = bool(c.get("tie_word_embeddings", False))
    T = _load_hf_tensors(d)

    def g(name, shape):
        if name not in T:
            raise KeyError(f"{d}: missing tensor {name}")
        a = T[name]
        if tuple(a.shape) != tuple(shape):
            raise ValueError(f"{d}: {name} has shape {list(a.shape)}, expected {list(shape)}")
        return a

    vocab = int(c.get("vocab_size") or T["model.embed_tokens.weight"].shape[0])
    hidden = int(c["intermediate_size"])
    emb = g("model.embed_tokens.weight", (vocab, dim))
    layers = []
    for l in range(n_layers):
        p = f"model.layers.{l}."
        layers.append(dict(
            rms_att=g(p + "input_layernorm.weight", (dim,)),
            wq=g(p + "self_attn.q_proj.weight", (n_heads * hs, dim)),
            wk=g(p + "self_attn.k_proj.weight", (n_kv * hs, dim)),
            wv=g(p + "self_attn.v_proj.weight", (n_kv * hs, dim)),
            wo=g(p + "self_attn.o_proj.weight", (dim, n_heads * hs)),
            rms_ffn=g(p + "post_attention_layernorm.weight", (dim,)),
            w1=g(p + "mlp.gate_proj.weight", (hidden, dim)),
            w2=g(p + "mlp.down_proj.weight", (dim, hidden)),
            w3=g(p + "mlp.up_proj.weight", (hidden, dim)),
        ))
    if tie or "lm_head.weight" not in T:
        wcls = emb
        tie = True
    else:
        wcls = g("lm_head.weight", (vocab, dim))
    cfg = dict(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv,
               head_size=hs, vocab_size=vocab, seq_len=int(c.get("max_position_embeddings", 2048)),
               norm_eps=float(c.get("rms_norm_eps", 1e-6)), rope_theta=float(c.get("rope_theta", 10000.0)),
               rope="half", shared_classifier=tie)
    return Model(cfg, dict(emb=emb, layers=layers, rms_final=g("model.norm.weight", (dim,)), wcls=wcls))


def load_model(path):
    return load_hf(path) if os.path.isdir(path) else load_llama2c(path)


# ----------------------------------------------------------------------------------------
# Conversion to the HF layout
def interleaved_to_half(w, n_heads):
    """Permute the rows of a [n_heads*hs, in] projection so that row 2i of each head goes to
    row i and row 2i+1 to row hs/2+i (interleaved-pair RoPE -> rotate_half RoPE)."""
    rows, cols = w.shape
    hs = rows // n_heads
    return w.reshape(n_heads, hs // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def write_hf(model, outdir):
    c, w = model.cfg, model.w
    os.makedirs(outdir, exist_ok=True)
    perm = c["rope"] == "interleaved"
    T = {"model.embed_tokens.weight": w["emb"], "model.norm.weight": w["rms_final"]}
    for l, L in enumerate(w["layers"]):
        p = f"model.layers.{l}."
        T[p + "input_layernorm.weight"] = L["rms_att"]
        T[p + "self_attn.q_proj.weight"] = interleaved_to_half(L["wq"], c["n_heads"]) if perm else L["wq"]
        T[p + "self_attn.k_proj.weight"] = interleaved_to_half(L["wk"], c["n_kv_heads"]) if perm else L["wk"]
        T[p + "self_attn.v_proj.weight"] = L["wv"]
        T[p + "self_attn.o_proj.weight"] = L["wo"]
        T[p + "post_attention_layernorm.weight"] = L["rms_ffn"]
        T[p + "mlp.gate_proj.weight"] = L["w1"]
        T[p + "mlp.up_proj.weight"] = L["w3"]
        T[p + "mlp.down_proj.weight"] = L["w2"]
    if not c["shared_classifier"]:
        T["lm_head.weight"] = w["wcls"]
    T = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in T.items()}
    st_np.save(os.path.join(outdir, "model.safetensors"), T, metadata={"format": "pt"})
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": c["dim"],
        "intermediate_size": c["hidden_dim"],
        "num_hidden_layers": c["n_layers"],
        "num_attention_heads": c["n_heads"],
        "num_key_value_heads": c["n_kv_heads"],
        "vocab_size": c["vocab_size"],
        "max_position_embeddings": c["seq_len"],
        "rms_norm_eps": c["norm_eps"],
        "rope_theta": c["rope_theta"],
        "hidden_act": "silu",
        "tie_word_embeddings": bool(c["shared_classifier"]),
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


# ----------------------------------------------------------------------------------------
# Forward
def rmsnorm(x, weight, eps):
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * weight


def rope_tables(T, hs, theta, dtype):
    i = torch.arange(hs // 2, dtype=torch.float64)
    freq = 1.0 / theta ** (2.0 * i / hs)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]  # [T, hs/2]
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def apply_rope(x, cos, sin, layout):
    """x [B,T,H,hs]; cos/sin [T,hs/2]."""
    c = cos[None, :, None, :]
    s = sin[None, :, None, :]
    if layout == "interleaved":
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return torch.cat((a * c - b * s, b * c + a * s), dim=-1)


def forward(model, tokens, hooks=None, dtype=torch.float64):
    """tokens: LongTensor [B,T].  hooks: dict name -> list of f(act) returning a replacement
    (or None to keep act).  Returns logits [B,T,V] in dtype."""
    c = model.cfg
    W = model.tensors(dtype)
    hooks = hooks or {}
    B, T = tokens.shape
    H, KV, hs, eps = c["n_heads"], c["n_kv_heads"], c["head_size"], c["norm_eps"]
    rep = H // KV
    cos, sin = rope_tables(T, hs, c["rope_theta"], dtype)
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)

    def hook(name, x):
        for f in hooks.get(name, ()):
            r = f(x)
            if r is not None:
                x = r
        return x

    x = W["emb"][tokens]
    for l, L in enumerate(W["layers"]):
        p = f"blocks.{l}."
        x = hook(p + "hook_resid_pre", x)
        h = rmsnorm(x, L["rms_att"], eps)
        q = (h @ L["wq"].T).view(B, T, H, hs)
        k = (h @ L["wk"].T).view(B, T, KV, hs)
        v = (h @ L["wv"].T).view(B, T, KV, hs)
        q = apply_rope(q, cos, sin, c["rope"])
        k = apply_rope(k, cos, sin, c["rope"])
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B,heads,T,hs]
        k = k.repeat_interleave(rep, dim=1)  # query head h reads kv head h // rep
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        att = att.masked_fill(causal, float("-inf")).softmax(dim=-1)
        o = (att @ v).transpose(1, 2).reshape(B, T, H * hs)
        attn_out = hook(p + "hook_attn_out", o @ L["wo"].T)
        x = hook(p + "hook_resid_mid", x + attn_out)
        h2 = rmsnorm(x, L["rms_ffn"], eps)
        mlp = (torch.nn.functional.silu(h2 @ L["w1"].T) * (h2 @ L["w3"].T)) @ L["w2"].T
        mlp_out = hook(p + "hook_mlp_out", mlp)
        x = hook(p + "hook_resid_post", x + mlp_out)
    x = rmsnorm(x, W["rms_final"], eps)
    return x @ W["wcls"].T


def greedy(model, prompt, steps, hooks=None, dtype=torch.float64):
    """llama2.c's convention: `steps` forward passes at positions 0..steps-1 (prompt ones
    included), each yielding the token of the next position, so the result holds up to
    steps+1 ids (BOS included); stops early when BOS (1) would be produced."""
    seq = list(prompt)
    while len(seq) < steps + 1:
        logits = forward(model, torch.tensor([seq], dtype=torch.long), hooks, dtype)
        nxt = int(logits[0, -1].argmax())
        if nxt == 1:
            break
        seq.append(nxt)
    return seq


# ----------------------------------------------------------------------------------------
# llama2.c tokenizer (decode only)
def load_tokenizer(path):
    with open(path, "rb") as f:
        raw = f.read()
    pos = 4  # int32 max_token_length
    pieces = []
    while pos < len(raw):
        _score, n = struct.unpack_from("<fi", raw, pos)
        pos += 8
        pieces.append(raw[pos:pos + n])
        pos += n
    return pieces


def decode(pieces, ids):
    """Text of ids[1:], each piece decoded given its predecessor (llama2.c rules)."""
    out = bytearray()
    for prev, tok in zip(ids, ids[1:]):
        p = pieces[tok]
        if prev == 1 and p.startswith(b" "):
            p = p[1:]
        if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
            try:
                p = bytes([int(p[3:5], 16)])
            except ValueError:
                pass
        out += p
    return out.decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------------------
def parse_ids(s):
    return [int(t) for t in s.replace(" ", "").split(",") if t != ""]


def build_hooks(model, args, B, T):
    names = set(model.hook_names())
    hooks = {}
    D = model.cfg["dim"]
    for spec in args.intervene or []:
        name, sep, path = spec.partition(":")
        if not sep or name not in names:
            raise SystemExit(f"--intervene {spec!r}: want HOOK:FILE with HOOK one of blocks.L.hook_*")
        vec = np.fromfile(path, dtype="<f4")
        if vec.size == D:
            add = torch.from_numpy(vec.astype(np.float64))
        elif B is not None and vec.size == B * T * D:
            add = torch.from_numpy(vec.astype(np.float64).reshape(B, T, D))
        else:
            raise SystemExit(f"--intervene {spec!r}: {vec.size} floats, want {D}"
                             + (f" or {B * T * D}" if B is not None else ""))
        hooks.setdefault(name, []).append(lambda x, a=add: x + a.to(x.dtype))
    for name in args.zero or []:
        if name not in names:
            raise SystemExit(f"--zero {name!r}: not a hook point (blocks.L.hook_*)")
        hooks.setdefault(name, []).append(lambda x: torch.zeros_like(x))
    return hooks


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--tokens")
    ap.add_argument("--B", type=int)
    ap.add_argument("--T", type=int)
    ap.add_argument("--out")
    ap.add_argument("--intervene", action="append", metavar="HOOK:FILE")
    ap.add_argument("--zero", action="append", metavar="HOOK")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--generate", action="store_true")
    ap.add_argument("--prompt-tokens")
    ap.add_argument("--prompt")
    ap.add_argument("--sp-model")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--decode", metavar="TOK.bin")
    ap.add_argument("--ids")
    ap.add_argument("--to-hf", metavar="OUTDIR")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)

    if args.ids is not None:
        if not args.decode:
            raise SystemExit("--ids needs --decode TOK.bin")
        print(decode(load_tokenizer(args.decode), parse_ids(args.ids)))
        return
    if not args.model:
        raise SystemExit("--model is required")
    model = load_model(args.model)

    if args.to_hf:
        write_hf(model, args.to_hf)
        print(f"wrote {args.to_hf}")
        return

    if args.generate:
        if args.prompt_tokens is not None:
            prompt = parse_ids(args.prompt_tokens)
        else:
            prompt = [1]
            if args.prompt:
                import sentencepiece as spm
                spf = args.sp_model or os.path.join(os.path.dirname(os.path.abspath(args.model)), "tok512.model")
                prompt += spm.SentencePieceProcessor(model_file=spf).encode(args.prompt)
        if not prompt:
            raise SystemExit("empty prompt")
        seq = greedy(model, prompt, args.steps, build_hooks(model, args, None, None), dtype)
        print(",".join(map(str, seq)))
        if args.decode:
            print(decode(load_tokenizer(args.decode), seq))
        return

    if not (args.tokens and args.B and args.T and args.out):
        raise SystemExit("forward needs --tokens FILE --B B --T T --out OUT.safetensors")
    B, T = args.B, args.T
    toks = np.fromfile(args.tokens, dtype="<i4")
    if toks.size != B * T:
        raise SystemExit(f"{args.tokens}: {toks.size} tokens, want B*T = {B * T}")
    if toks.min() < 0 or toks.max() >= model.cfg["vocab_size"]:
        raise SystemExit(f"{args.tokens}: token id out of range [0, {model.cfg['vocab_size']})")
    hooks = build_hooks(model, args, B, T)
    saved = {}
    for name in model.hook_names():  # capture after any interventions at the same point
        hooks.setdefault(name, []).append(lambda x, n=name: saved.__setitem__(n, x.clone()))
    with torch.no_grad():
        logits = forward(model, torch.from_numpy(toks.astype(np.int64)).view(B, T), hooks, dtype)
    out = {"logits": logits.to(torch.float32).numpy()}
    for n, a in saved.items():
        out[n] = a.to(torch.float32).numpy()
    st_np.save(args.out, out, metadata={"model": os.path.basename(os.path.normpath(args.model)),
                                        "dtype": args.dtype, "B": B, "T": T})


if __name__ == "__main__":
    main()
