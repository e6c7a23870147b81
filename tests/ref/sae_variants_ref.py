#!/usr/bin/python3
"""sae_variants_ref.py - an independent PyTorch reference of the training step of loupe's SAE
variants (include/loupe/sae.h), for equivalence tests. float64, autograd for the gradients,
dense tensors throughout (no suffix sums, no pruned top-k), a hand-written Adam equal to
torch.optim.Adam.

Usage (Debian's /usr/bin/python3, which has torch):
  sae_variants_ref.py --cfg cfg.json --init init.safetensors --data data.safetensors
                      --steps N --out out.safetensors
  sae_variants_ref.py --selftest

cfg.json: variant ("hiertopk" | "kron" | "kron_product" | "residual"), d_in, d_sae, k, heads, m, n,
  theta_momentum, k_aux, aux_coeff, dead_tokens, lr, beta1, beta2, eps.
init.safetensors: W_enc [E,d], b_enc [E], W_dec [F,d], b_dec [d], dead_since [F]
  (E = F, or heads*(m+n) for kron: rows [P; Q]).
data.safetensors: x [S,B,d]; t [S,B,d] (residual: the target); step s uses batch s mod S.
out.safetensors: W_enc, b_enc, W_dec, b_dec, theta [1], loss [N], rec [N], aux [N].

The losses (xn one batch [B,d]):
  hiertopk (the paper's reference formula, arXiv 2505.24473): v, idx = topk(relu(pre), K)
     (sorted); xhat_j = b_dec + cumsum_j(v_j W_dec[idx_j]); paper = mean over (b, j, dims) of
     (xhat_j - x)^2; loupe's L_rec = d * paper (loupe sums over dims, as for every arch).
  kron: p = relu(P xc + b_p) [B,h,m], q = relu(Q xc + b_q) [B,h,n], xc = x - b_dec;
     z[b,g,i,j] = mAND(p, q) = sqrt(p q) where both > 0 else 0, with the guarded gradient
     dz/dp = q / (2 max(z, 1e-6)) (a custom autograd function); kron_product: z = p q;
     top-k over all F = h m n products; L_rec = mean_b ||x - xhat||^2.
  residual (SAE Boost, arXiv 2507.12990): batch top-k SAE reading x with no decoder bias
     (b_dec frozen at 0): pre = x W_enc^T + b_enc; L_rec = mean_b ||t - xhat||^2; the running
     threshold theta as for batchtopk.
  AuxK: e = (target - xhat) detached; z_aux = per-row top min(k_aux, n_dead) latent values
     among dead latents (positives); AuxK = sum||e - z_aux W_dec||^2 / sum||e||^2; L = L_rec +
     aux_coeff * AuxK.
  step: gradients; W_dec rows lose the parallel component; Adam; W_dec rows renormalised;
     dead_since = 0 where a latent fired, else += B.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_np  # noqa: E402

EPS_MAND = 1e-6


class MAnd(torch.autograd.Function):
    """z = sqrt(p q) where p > 0 and q > 0, else 0; dz/dp = q / (2 max(z, eps)), dz/dq = p / (...)."""

    @staticmethod
    def forward(ctx, p, q):
        on = (p > 0) & (q > 0)
        z = torch.where(on, torch.sqrt(torch.clamp(p * q, min=0)), torch.zeros_like(p))
        ctx.save_for_backward(p, q, z, on)
        return z

    @staticmethod
    def backward(ctx, g):
        p, q, z, on = ctx.saved_tensors
        den = 2 * torch.clamp(z, min=EPS_MAND)
        gp = torch.where(on, g * q / den, torch.zeros_like(g))
        gq = torch.where(on, g * p / den, torch.zeros_like(g))
        return gp, gq


def latents(P, xn, cfg):
    """Dense latent values [B,F] before the sparsity (relu'd), per variant."""
    v = cfg["variant"]
    if v == "residual":
        return torch.relu(xn @ P["W_enc"].T + P["b_enc"])
    pre = (xn - P["b_dec"]) @ P["W_enc"].T + P["b_enc"]
    if v == "hiertopk":
        return torch.relu(pre)
    h, m, n = cfg["heads"], cfg["m"], cfg["n"]
    B = xn.shape[0]
    p = torch.relu(pre[:, : h * m]).reshape(B, h, m, 1).expand(B, h, m, n)
    q = torch.relu(pre[:, h * m:]).reshape(B, h, 1, n).expand(B, h, m, n)
    z = p * q if v == "kron_product" else MAnd.apply(p, q)
    return z.reshape(B, h * m * n)


def loss_fn(P, xn, tn, cfg, dead, theta_state):
    v, F, K = cfg["variant"], cfg["d_sae"], cfg["k"]
    B, d = xn.shape
    a = latents(P, xn, cfg)
    if v == "residual":
        flat = a.reshape(-1)
        vals, idx = torch.topk(flat, min(K * B, flat.numel()))
        vals = torch.where(vals > 0, vals, torch.zeros_like(vals))
        z = torch.zeros_like(flat).scatter(0, idx, vals).reshape(B, F)
        xhat = z @ P["W_dec"]  # no decoder bias
        rec = ((tn - xhat) ** 2).sum(1).mean()
    elif v == "hiertopk":
        vals, idx = torch.topk(a, K, dim=1)  # sorted, descending
        z = torch.zeros_like(a).scatter(1, idx, vals)
        contrib = vals[:, :, None] * P["W_dec"][idx]  # [B,K,d]
        xh = P["b_dec"] + torch.cumsum(contrib, dim=1)  # x̂_j for j = 1..K
        paper = ((xh - tn[:, None, :]) ** 2).mean()
        rec = d * paper
        xhat = xh[:, -1, :]
    else:
        vals, idx = torch.topk(a, K, dim=1)
        vals = torch.where(vals > 0, vals, torch.zeros_like(vals))
        z = torch.zeros_like(a).scatter(1, idx, vals)
        xhat = z @ P["W_dec"] + P["b_dec"]
        rec = ((tn - xhat) ** 2).sum(1).mean()
    aux = rec.new_zeros(())
    n_dead = int(dead.sum().item())
    if cfg["k_aux"] > 0 and n_dead > 0:
        e = (tn - xhat).detach()
        masked = a.masked_fill(~dead.view(1, F), float("-inf"))
        vals2, idx2 = torch.topk(masked, min(cfg["k_aux"], n_dead), dim=1)
        vals2 = torch.where(vals2 > 0, vals2, torch.zeros_like(vals2))
        z_aux = torch.zeros_like(a).scatter(1, idx2, vals2)
        den = (e ** 2).sum()
        if den.item() > 0:
            aux = cfg["aux_coeff"] * ((e - z_aux @ P["W_dec"]) ** 2).sum() / den
    return rec + aux, rec, aux, z


def run(cfg, init, x, t, steps):
    dt = torch.float64
    P = {n: torch.tensor(np.asarray(init[n]), dtype=dt).clone() for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
    mom = {n: torch.zeros_like(p) for n, p in P.items()}
    vel = {n: torch.zeros_like(p) for n, p in P.items()}
    dead_since = torch.tensor(np.asarray(init["dead_since"], np.float64))
    theta, theta_init = 0.0, False
    losses, recs, auxs = [], [], []
    b1, b2 = cfg["beta1"], cfg["beta2"]
    trained = ["W_enc", "b_enc", "W_dec"] + ([] if cfg["variant"] == "residual" else ["b_dec"])
    for step in range(steps):
        xn = torch.tensor(x[step % x.shape[0]], dtype=dt)
        tn = torch.tensor(t[step % t.shape[0]], dtype=dt) if t is not None else xn
        Pg = {n: p.detach().clone().requires_grad_(n in trained) for n, p in P.items()}
        dead = dead_since >= cfg["dead_tokens"]
        loss, rec, aux, z = loss_fn(Pg, xn, tn, cfg, dead, theta)
        grads = torch.autograd.grad(loss, [Pg[n] for n in trained])
        g = dict(zip(trained, grads))
        losses.append(loss.item())
        recs.append(rec.item())
        auxs.append(float(aux))
        with torch.no_grad():
            W = P["W_dec"]
            g["W_dec"] = g["W_dec"] - (g["W_dec"] * W).sum(1, keepdim=True) * W
            tt = step + 1
            for n in trained:
                mom[n].mul_(b1).add_(g[n], alpha=1 - b1)
                vel[n].mul_(b2).addcmul_(g[n], g[n], value=1 - b2)
                denom = (vel[n].sqrt() / math.sqrt(1 - b2 ** tt)).add_(cfg["eps"])
                P[n].addcdiv_(mom[n], denom, value=-cfg["lr"] / (1 - b1 ** tt))
            W.div_(W.norm(dim=1, keepdim=True))
            fired = (z > 0).any(0)
            dead_since = torch.where(fired, torch.zeros_like(dead_since), dead_since + xn.shape[0])
            if cfg["variant"] == "residual":
                pos = z[z > 0]
                if pos.numel() > 0:
                    mn = pos.min().item()
                    theta = mn if not theta_init else (1 - cfg["theta_momentum"]) * theta + cfg["theta_momentum"] * mn
                    theta_init = True
    out = {n: p.numpy().astype(np.float32) for n, p in P.items()}
    out["theta"] = np.array([theta], np.float32)
    out["loss"] = np.array(losses, np.float32)
    out["rec"] = np.array(recs, np.float32)
    out["aux"] = np.array(auxs, np.float32)
    return out


def selftest():
    """The guarded mAND gradient equals finite differences away from 0; the hierarchical loss
    at K = 1 equals the plain TopK loss; the dense kron latents match a loop."""
    torch.manual_seed(0)
    p = torch.rand(5, dtype=torch.float64) + 0.1
    q = torch.rand(5, dtype=torch.float64) + 0.1
    ok = torch.autograd.gradcheck(MAnd.apply, (p.requires_grad_(), q.requires_grad_()))
    cfg = {"variant": "hiertopk", "d_in": 4, "d_sae": 8, "k": 1, "k_aux": 0, "aux_coeff": 0}
    P = {"W_enc": torch.randn(8, 4, dtype=torch.float64), "b_enc": torch.zeros(8, dtype=torch.float64),
         "W_dec": torch.randn(8, 4, dtype=torch.float64), "b_dec": torch.randn(4, dtype=torch.float64)}
    x = torch.randn(6, 4, dtype=torch.float64)
    l, _, _, z = loss_fn(P, x, x, cfg, torch.zeros(8, dtype=torch.bool), 0)
    plain = ((x - (z @ P["W_dec"] + P["b_dec"])) ** 2).sum(1).mean()
    ok = ok and abs(l.item() - plain.item()) < 1e-12
    print("selftest", "ok" if ok else "FAIL")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cfg")
    ap.add_argument("--init")
    ap.add_argument("--data")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--out")
    ap.add_argument("--selftest", action="store_true")
    a = ap.parse_args()
    if a.selftest:
        sys.exit(selftest())
    with open(a.cfg) as f:
        cfg = json.load(f)
    init = st_np.load(a.init)
    init = init[0] if isinstance(init, tuple) else init
    data = st_np.load(a.data)
    data = data[0] if isinstance(data, tuple) else data
    out = run(cfg, init, np.asarray(data["x"]), np.asarray(data["t"]) if "t" in data else None, a.steps)
    st_np.save(a.out, out)


if __name__ == "__main__":
    main()
