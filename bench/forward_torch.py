#!/usr/bin/python3
"""forward_torch.py - PyTorch float32 baseline for loupe's forward-pass benchmark.

  bench/forward_torch.py --model M --B 32 --T 256 --threads N --iters K [--warmup W] [--check]

M is a llama2.c .bin or a Hugging Face Llama directory (loaded by tests/ref/llama_ref.py).
Runs a full forward (logits for every position) over a fixed-seed random [B,T] token batch
under torch.inference_mode() with torch.set_num_threads(N): W warm-up passes, then K timed
ones.  The last line printed is `torch_tok_s=<float>` (B*T*K / total seconds of the K timed
passes); the line before it also gives best_iter_tok_s (fastest single pass: a steadier
figure on a busy machine).
--check first compares the logits against the float64 reference forward of llama_ref.py on
a small batch and exits non-zero if they differ by more than 1e-3.

Speed choices: fused q/k/v and gate/up projections, rotate_half RoPE on precomputed tables
(llama2.c wq/wk rows are permuted into that layout, which leaves the outputs unchanged),
attention (--attn): "sdpa" = F.scaled_dot_product_attention(is_causal=True), the default when
this torch has it (>= 2.0); otherwise "chunked" (the default on Debian's torch 1.13): query
blocks of --chunk rows, each doing bmm/mask/softmax/bmm against only the keys it can see,
which skips the masked upper triangle much as SDPA's causal CPU kernel does; "full" = one
bmm over all T x T scores + causal mask + softmax.  GQA by repeat_interleave of k/v.
torch.compile is not used (absent in Debian's torch 1.13).
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import llama_ref  # noqa: E402

HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")


class TorchLlama(torch.nn.Module):
    def __init__(self, model, attn="auto", chunk=64):
        super().__init__()
        self.attn = ("sdpa" if HAVE_SDPA else "chunked") if attn == "auto" else attn
        if self.attn == "sdpa" and not HAVE_SDPA:
            raise SystemExit(f"--attn sdpa: torch {torch.__version__} has no F.scaled_dot_product_attention")
        self.chunk = chunk
        c, w = model.cfg, model.w
        self.c = c
        t = lambda a: torch.nn.Parameter(torch.tensor(a, dtype=torch.float32), requires_grad=False)  # noqa: E731
        perm = c["rope"] == "interleaved"
        fix = lambda a, nh: llama_ref.interleaved_to_half(a, nh) if perm else a  # noqa: E731
        self.emb = t(w["emb"])
        self.rms_final = t(w["rms_final"])
        self.wcls = t(w["wcls"])
        self.layers = torch.nn.ModuleList()
        for L in w["layers"]:
            m = torch.nn.Module()
            m.rms_att = t(L["rms_att"])
            m.wqkv = t(np.concatenate([fix(L["wq"], c["n_heads"]), fix(L["wk"], c["n_kv_heads"]), L["wv"]]))
            m.wo = t(L["wo"])
            m.rms_ffn = t(L["rms_ffn"])
            m.w13 = t(np.concatenate([L["w1"], L["w3"]]))
            m.w2 = t(L["w2"])
            self.layers.append(m)
        self._tables = {}

    def tables(self, T):
        if T not in self._tables:
            hs = self.c["head_size"]
            cos, sin = llama_ref.rope_tables(T, hs, self.c["rope_theta"], torch.float32)
            cos, sin = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)  # [T, hs]
            mask = torch.ones(T, T, dtype=torch.bool).triu(1)
            self._tables[T] = (cos[None, None], sin[None, None], mask)
        return self._tables[T]

    @staticmethod
    def rmsnorm(x, w, eps):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def forward(self, tokens):
        c = self.c
        B, T = tokens.shape
        H, KV, hs, eps = c["n_heads"], c["n_kv_heads"], c["head_size"], c["norm_eps"]
        rep, half = H // KV, hs // 2
        qd, kvd = H * hs, KV * hs
        cos, sin, mask = self.tables(T)
        scale = 1.0 / math.sqrt(hs)

        def rope(x):  # x [B,heads,T,hs]
            rot = torch.cat((-x[..., half:], x[..., :half]), -1)
            return x * cos + rot * sin

        x = F.embedding(tokens, self.emb)
        for m in self.layers:
            qkv = F.linear(self.rmsnorm(x, m.rms_att, eps), m.wqkv)
            q, k, v = qkv.split((qd, kvd, kvd), -1)
            q = rope(q.view(B, T, H, hs).transpose(1, 2))
            k = rope(k.view(B, T, KV, hs).transpose(1, 2))
            v = v.view(B, T, KV, hs).transpose(1, 2)
            if rep > 1:
                k = k.repeat_interleave(rep, dim=1)
                v = v.repeat_interleave(rep, dim=1)
            if self.attn == "sdpa":
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                q3 = (q * scale).reshape(B * H, T, hs)
                k3 = k.reshape(B * H, T, hs).transpose(1, 2)
                v3 = v.reshape(B * H, T, hs)
                C = T if self.attn == "full" else self.chunk
                o = torch.empty_like(q3)
                for s in range(0, T, C):  # query block s:e sees keys 0:e only
                    e = min(s + C, T)
                    att = torch.bmm(q3[:, s:e], k3[:, :, :e])
                    att[:, :, s:].masked_fill_(mask[s:e, s:e], float("-inf"))
                    o[:, s:e] = torch.bmm(att.softmax(-1), v3[:, :e])
                o = o.view(B, H, T, hs)
            x = x + F.linear(o.transpose(1, 2).reshape(B, T, qd), m.wo)
            g, u = F.linear(self.rmsnorm(x, m.rms_ffn, eps), m.w13).chunk(2, -1)
            x = x + F.linear(F.silu(g) * u, m.w2)
        return F.linear(self.rmsnorm(x, self.rms_final, eps), self.wcls)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--attn", choices=("auto", "sdpa", "chunked", "full"), default="auto")
    ap.add_argument("--chunk", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ref = llama_ref.load_model(a.model)
    net = TorchLlama(ref, a.attn, a.chunk).eval()
    V = ref.cfg["vocab_size"]

    if a.check:
        g = torch.Generator().manual_seed(a.seed + 1)
        tk = torch.randint(0, V, (2, min(a.T, 100)), generator=g)
        with torch.inference_mode():
            got = net(tk).double()
        want = llama_ref.forward(ref, tk)
        err = (got - want).abs().max().item()
        print(f"check: max|logits - float64 reference| = {err:.3g}")
        if not err < 1e-3:
            sys.exit(1)

    g = torch.Generator().manual_seed(a.seed)
    tokens = torch.randint(0, V, (a.B, a.T), generator=g)
    with torch.inference_mode():
        for _ in range(a.warmup):
            net(tokens)
        times = []
        for _ in range(a.iters):
            t0 = time.perf_counter()
            net(tokens)
            times.append(time.perf_counter() - t0)
    dt = sum(times)
    print(f"model={os.path.basename(os.path.normpath(a.model))} B={a.B} T={a.T} threads={a.threads} "
          f"iters={a.iters} torch={torch.__version__} attn={net.attn} seconds={dt:.3f} "
          f"best_iter_tok_s={a.B * a.T / min(times):.1f}")
    print(f"torch_tok_s={a.B * a.T * a.iters / dt:.1f}")


if __name__ == "__main__":
    main()
