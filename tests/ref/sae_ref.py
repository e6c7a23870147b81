#!/usr/bin/python3
"""sae_ref.py - an independent PyTorch reference of loupe's SAE training step (the math in
include/loupe/sae.h), for equivalence tests.  float64 by default, autograd for the gradients,
a hand-written Adam identical to torch.optim.Adam (so float64 works the same way).

Usage (always with Debian's /usr/bin/python3, which has torch):
  sae_ref.py --cfg cfg.json --init init.safetensors --data data.safetensors --steps N
             --out out.safetensors [--dtype float64|float32]
  sae_ref.py --selftest [--verbose]

cfg.json keys: arch ("relu"|"topk"|"batchtopk"|"jumprelu"), d_in, d_sae, k, l1_coeff,
  l0_coeff, jump_bandwidth, theta_momentum, k_aux, aux_coeff, dead_tokens,
  normalize_decoder (0/1), lr, beta1, beta2, eps.
init.safetensors: W_enc [F,d], b_enc [F], W_dec [F,d], b_dec [d], log_threshold [F]
  (jumprelu only), dead_since [F] (any float dtype, F64 expected), theta [1],
  theta_initialized [1] (0/1).  Missing dead_since/theta/theta_initialized default to 0.
data.safetensors: x [S,B,d] (rows already normalised); step s uses batch s mod S.
out.safetensors (all F32):
  W_enc, b_enc, W_dec, b_dec, log_threshold (jumprelu)   final parameters
  theta [1], theta_initialized [1], dead_since [F]        final state
  loss [N] (total), loss_parts [N,3] (rec, penalty, aux_coeff*AuxK), l0 [N] (mean #z>0 per row)
  grad_W_enc, grad_b_enc, grad_W_dec, grad_b_dec, grad_log_threshold (jumprelu):
      step-0 raw autograd gradients (before the decoder parallel-component removal)
  z0 [B,F]: step-0 codes, dense

Math of one step (xn one batch [B,d]):
  pre = (xn - b_dec) @ W_enc^T + b_enc
  relu:      z = relu(pre);  penalty = l1_coeff * mean_b sum_f z_bf * ||W_dec[f]||
  topk:      z = relu(pre) keeping the k largest per row (torch.topk + scatter)
  batchtopk: z = relu(pre) keeping the k*B largest over the flattened batch, positives only;
             after the step theta <- (1-m) theta + m * min(kept positive) (theta = min when unset)
  jumprelu:  theta = exp(log_threshold); z = pre * H(pre - theta); penalty = l0_coeff *
             mean_b sum_f H(pre - theta); straight-through rectangle-kernel pseudo-derivatives
  xhat = z @ W_dec + b_dec; L_rec = mean_b sum_d (xn - xhat)^2
  AuxK (k_aux > 0 and any latent with dead_since >= dead_tokens, state before the step):
     e = (xn - xhat).detach(); z_aux = per-row top min(k_aux, n_dead) of relu(pre) among dead
     latents (positives only); ehat = z_aux @ W_dec; AuxK = sum ||e - ehat||^2 / sum ||e||^2
  L = L_rec + penalty + aux_coeff * AuxK
  step: autograd grads; [normalize_decoder] g_f -= (g_f . w_f) w_f on W_dec rows; Adam;
        [normalize_decoder] w_f /= ||w_f||; dead_since_f = 0 if any z_bf > 0 else += B.
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_np  # noqa: E402

ARCHS = ("relu", "topk", "batchtopk", "jumprelu")
PARAM_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec", "log_threshold")
CFG_DEFAULTS = {
    "k": 0, "l1_coeff": 0.0, "l0_coeff": 0.0, "jump_bandwidth": 0.001, "theta_momentum": 0.01,
    "k_aux": 0, "aux_coeff": 1.0 / 32, "dead_tokens": 10_000_000, "normalize_decoder": 1,
    "lr": 1e-4, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
}


def load_cfg(path_or_dict):
    if isinstance(path_or_dict, dict):
        c = dict(path_or_dict)
    else:
        with open(path_or_dict) as f:
            c = json.load(f)
    for k, v in CFG_DEFAULTS.items():
        c.setdefault(k, v)
    if c["arch"] not in ARCHS:
        raise ValueError(f"unknown arch {c['arch']!r}")
    for k in ("d_in", "d_sae", "k", "k_aux", "normalize_decoder"):
        c[k] = int(c[k])
    c["dead_tokens"] = float(c["dead_tokens"])
    for k in ("l1_coeff", "l0_coeff", "jump_bandwidth", "theta_momentum", "aux_coeff",
              "lr", "beta1", "beta2", "eps"):
        c[k] = float(c[k])
    return c


# ------------------------------------------------------------------------------------------
# JumpReLU straight-through functions (rectangle kernel K(u) = 1[|u| < 1/2], strict)

def rect_kernel(u):
    return (u.abs() < 0.5).to(u.dtype)


class JumpReLUFn(torch.autograd.Function):
    """z = pre * 1[pre > theta];  dz/dpre = 1[pre > theta];  dz/dtheta = -(theta/eps) K((pre-theta)/eps)."""

    @staticmethod
    def forward(ctx, pre, theta, bw):
        ctx.save_for_backward(pre, theta)
        ctx.bw = bw
        return pre * (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        bw = ctx.bw
        gpre = g * (pre > theta).to(pre.dtype)
        gtheta = (-(theta / bw) * rect_kernel((pre - theta) / bw) * g).sum(0)
        return gpre, gtheta, None


class HeavisideFn(torch.autograd.Function):
    """H = 1[pre > theta] (float);  dH/dpre = 0;  dH/dtheta = -(1/eps) K((pre-theta)/eps)."""

    @staticmethod
    def forward(ctx, pre, theta, bw):
        ctx.save_for_backward(pre, theta)
        ctx.bw = bw
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        bw = ctx.bw
        gtheta = (-(1.0 / bw) * rect_kernel((pre - theta) / bw) * g).sum(0)
        return torch.zeros_like(pre), gtheta, None


# ------------------------------------------------------------------------------------------
# Forward + loss

def sae_loss(P, xn, cfg, dead, fixed=None):
    """Total loss of one batch.  P: dict of parameter tensors; xn [B,d]; dead [F] bool.

    fixed=None: the real training path (relu / topk+scatter / batch topk / JumpReLU functions).
    fixed=dict(z=mask, aux=mask or None, e=residual or None): the same loss with the code
      selection and the stop-gradient AuxK target held fixed (z = pre * mask, z_aux = pre *
      mask_aux, e and sum||e||^2 the given constant, jumprelu L0 a constant) - a smooth function
      of W_enc, b_enc, W_dec, b_dec whose derivative is the autograd gradient, for finite
      differences.
    Returns (loss, info) with info: rec, pen, aux (already times aux_coeff), z, masks.
    """
    arch = cfg["arch"]
    B = xn.shape[0]
    W_enc, b_enc, W_dec, b_dec = P["W_enc"], P["b_enc"], P["W_dec"], P["b_dec"]
    F = W_enc.shape[0]
    pre = (xn - b_dec) @ W_enc.T + b_enc
    zero = pre.new_zeros(())

    theta = None
    if fixed is None:
        if arch == "relu":
            z = torch.relu(pre)
        elif arch == "topk":
            r = torch.relu(pre)
            kk = min(cfg["k"], F)
            vals, idx = torch.topk(r, kk, dim=1)
            z = torch.zeros_like(r).scatter(1, idx, vals)
        elif arch == "batchtopk":
            r = torch.relu(pre).reshape(-1)
            kk = min(cfg["k"] * B, r.numel())
            vals, idx = torch.topk(r, kk)
            vals = torch.where(vals > 0, vals, torch.zeros_like(vals))
            z = torch.zeros_like(r).scatter(0, idx, vals).reshape(B, F)
        elif arch == "jumprelu":
            theta = torch.exp(P["log_threshold"])
            z = JumpReLUFn.apply(pre, theta, cfg["jump_bandwidth"])
        zmask = (z > 0).detach()
    else:
        zmask = fixed["z"]
        z = pre * zmask.to(pre.dtype)

    if arch == "relu":
        pen = cfg["l1_coeff"] * (z * W_dec.norm(dim=1)).sum(1).mean()
    elif arch == "jumprelu":
        if fixed is None:
            H = HeavisideFn.apply(pre, theta, cfg["jump_bandwidth"])
            pen = cfg["l0_coeff"] * H.sum(1).mean()
        else:
            pen = cfg["l0_coeff"] * zmask.to(pre.dtype).sum(1).mean()
    else:
        pen = zero

    xhat = z @ W_dec + b_dec
    rec = ((xn - xhat) ** 2).sum(1).mean()

    aux = zero
    auxmask = e = None
    n_dead = int(dead.sum().item())
    if cfg["k_aux"] > 0 and n_dead > 0:
        e = (xn - xhat).detach() if fixed is None else fixed["e"]
        if fixed is None:
            r = torch.relu(pre)
            masked = r.masked_fill(~dead.view(1, F), float("-inf"))
            ka = min(cfg["k_aux"], n_dead)
            vals, idx = torch.topk(masked, ka, dim=1)
            vals = torch.where(vals > 0, vals, torch.zeros_like(vals))
            z_aux = torch.zeros_like(r).scatter(1, idx, vals)
            auxmask = (z_aux > 0).detach()
        else:
            auxmask = fixed["aux"]
            z_aux = pre * auxmask.to(pre.dtype)
        ehat = z_aux @ W_dec
        den = (e ** 2).sum()
        if den.item() > 0:
            aux = cfg["aux_coeff"] * ((e - ehat) ** 2).sum() / den

    loss = rec + pen + aux
    return loss, {"rec": rec, "pen": pen, "aux": aux, "z": z, "masks": {"z": zmask, "aux": auxmask, "e": e}}


# ------------------------------------------------------------------------------------------
# Trainer

class Trainer:
    def __init__(self, cfg, init, dtype=torch.float64):
        self.cfg = cfg
        self.dtype = dtype
        names = list(PARAM_NAMES[:4]) + (["log_threshold"] if cfg["arch"] == "jumprelu" else [])
        self.P = {n: torch.tensor(np.asarray(init[n]), dtype=dtype).clone() for n in names}
        F, d = cfg["d_sae"], cfg["d_in"]
        assert self.P["W_enc"].shape == (F, d) and self.P["W_dec"].shape == (F, d)
        assert self.P["b_enc"].shape == (F,) and self.P["b_dec"].shape == (d,)
        self.m = {n: torch.zeros_like(p) for n, p in self.P.items()}
        self.v = {n: torch.zeros_like(p) for n, p in self.P.items()}
        self.t = 0
        ds = init.get("dead_since")
        self.dead_since = (torch.zeros(F, dtype=torch.float64) if ds is None
                           else torch.tensor(np.asarray(ds, dtype=np.float64).reshape(F)))
        th = init.get("theta")
        ti = init.get("theta_initialized")
        self.theta = torch.tensor(float(np.asarray(th).reshape(-1)[0]) if th is not None else 0.0, dtype=dtype)
        self.theta_init = bool(ti is not None and float(np.asarray(ti).reshape(-1)[0]) != 0)
        if math.isnan(self.theta.item()):
            self.theta_init = False

    def grads(self, xn, fixed=None):
        """Raw autograd gradients of the total loss at the current parameters."""
        P = {n: p.detach().clone().requires_grad_(True) for n, p in self.P.items()}
        dead = self.dead_since >= self.cfg["dead_tokens"]
        loss, info = sae_loss(P, xn, self.cfg, dead, fixed)
        gs = torch.autograd.grad(loss, [P[n] for n in P], allow_unused=True)
        g = {n: (gi if gi is not None else torch.zeros_like(P[n])) for n, gi in zip(P, gs)}
        return loss.detach(), info, g

    def adam(self, name, g):
        c = self.cfg
        b1, b2 = c["beta1"], c["beta2"]
        p, m, v = self.P[name], self.m[name], self.v[name]
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        bc1 = 1 - b1 ** self.t
        bc2 = 1 - b2 ** self.t
        denom = (v.sqrt() / math.sqrt(bc2)).add_(c["eps"])
        p.addcdiv_(m, denom, value=-c["lr"] / bc1)

    def step(self, x):
        c = self.cfg
        xn = torch.as_tensor(np.asarray(x)).to(self.dtype)
        B = xn.shape[0]
        loss, info, g = self.grads(xn)
        raw = {n: gi.clone() for n, gi in g.items()}
        with torch.no_grad():
            if c["normalize_decoder"]:
                W = self.P["W_dec"]
                g["W_dec"] = g["W_dec"] - (g["W_dec"] * W).sum(1, keepdim=True) * W
            self.t += 1
            for n in self.P:
                self.adam(n, g[n])
            if c["normalize_decoder"]:
                W = self.P["W_dec"]
                W.div_(W.norm(dim=1, keepdim=True))
            z = info["z"].detach()
            fired = (z > 0).any(0)
            self.dead_since = torch.where(fired, torch.zeros_like(self.dead_since), self.dead_since + B)
            if c["arch"] == "batchtopk":
                pos = z[z > 0]
                if pos.numel() > 0:
                    mn = pos.min()
                    if self.theta_init:
                        mom = c["theta_momentum"]
                        self.theta = (1 - mom) * self.theta + mom * mn
                    else:
                        self.theta = mn.clone()
                        self.theta_init = True
        rec = {
            "loss": loss.item(),
            "parts": [info["rec"].item(), float(info["pen"]), float(info["aux"])],
            "l0": (z > 0).to(torch.float64).sum().item() / B,
            "raw_grads": raw, "z": z, "masks": info["masks"], "xn": xn,
        }
        return rec


def train(cfg, init, x, steps, dtype=torch.float64):
    """Run `steps` steps; returns (trainer, per-step records list (grads/z kept for step 0))."""
    tr = Trainer(cfg, init, dtype)
    S = x.shape[0]
    recs = []
    for s in range(steps):
        r = tr.step(x[s % S])
        if s > 0:
            r = {k: v for k, v in r.items() if k not in ("raw_grads", "z", "masks", "xn")}
        recs.append(r)
    return tr, recs


def outputs(tr, recs):
    f32 = lambda t: np.asarray(t.detach().cpu().numpy() if torch.is_tensor(t) else t, dtype=np.float32)  # noqa: E731
    out = {n: f32(p) for n, p in tr.P.items()}
    out["theta"] = f32([tr.theta.item()])
    out["theta_initialized"] = f32([1.0 if tr.theta_init else 0.0])
    out["dead_since"] = f32(tr.dead_since)
    out["loss"] = f32([r["loss"] for r in recs])
    out["loss_parts"] = f32([r["parts"] for r in recs]).reshape(len(recs), 3)
    out["l0"] = f32([r["l0"] for r in recs])
    if recs:
        for n, gi in recs[0]["raw_grads"].items():
            out["grad_" + n] = f32(gi)
        out["z0"] = f32(recs[0]["z"])
    return out


def run_files(cfg_path, init_path, data_path, steps, out_path, dtype=torch.float64):
    cfg = load_cfg(cfg_path)
    init = st_np.load(init_path)
    x = st_np.load(data_path)["x"]
    if x.ndim == 2:
        x = x[None]
    assert x.ndim == 3 and x.shape[2] == cfg["d_in"], f"data x has shape {x.shape}"
    tr, recs = train(cfg, init, x, steps, dtype)
    out = outputs(tr, recs)
    st_np.save(out_path, out, {"arch": cfg["arch"], "steps": str(steps),
                               "dtype": str(dtype).replace("torch.", "")})
    return out


# ------------------------------------------------------------------------------------------
# Self-test

def _problem(arch, F=64, d=16, B=32, k=4, S=3, seed=0, normalize_decoder=1):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((F, d))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    init = {
        "W_dec": W.astype(np.float32), "W_enc": W.astype(np.float32).copy(),
        "b_enc": (0.1 * rng.standard_normal(F)).astype(np.float32),
        "b_dec": (0.1 * rng.standard_normal(d)).astype(np.float32),
        "dead_since": rng.integers(0, 200, F).astype(np.float64),
        "theta": np.zeros(1, np.float32), "theta_initialized": np.zeros(1, np.float32),
    }
    init["dead_since"][:16] = 1000.0          # 16 latents dead from the start (dead_tokens 256)
    if arch == "jumprelu":
        init["log_threshold"] = (np.log(0.5) + 0.2 * rng.standard_normal(F)).astype(np.float32)
    x = rng.standard_normal((S, B, d)).astype(np.float32)
    cfg = load_cfg({
        "arch": arch, "d_in": d, "d_sae": F, "k": k, "l1_coeff": 0.05, "l0_coeff": 0.02,
        "jump_bandwidth": 0.1, "theta_momentum": 0.1, "k_aux": 24, "aux_coeff": 1.0 / 32,
        "dead_tokens": 256, "normalize_decoder": normalize_decoder,
        "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
    })
    return cfg, init, x


def _fd_grads(cfg, P0, xn, dead, fixed, names, h=1e-6):
    P = {n: p.detach().clone() for n, p in P0.items()}
    out = {}
    with torch.no_grad():
        for n in names:
            flat = P[n].view(-1)
            g = torch.zeros_like(flat)
            for i in range(flat.numel()):
                old = flat[i].item()
                flat[i] = old + h
                lp = sae_loss(P, xn, cfg, dead, fixed)[0].item()
                flat[i] = old - h
                lm = sae_loss(P, xn, cfg, dead, fixed)[0].item()
                flat[i] = old
                g[i] = (lp - lm) / (2 * h)
            out[n] = g.view_as(P[n])
    return out


def _rel(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    den = np.abs(b).max() if b.size else 0.0
    return float(np.abs(a - b).max() / den) if den > 0 else float(np.abs(a - b).max())


def selftest(verbose=False):
    failures = []

    def check(ok, msg):
        print(("ok   " if ok else "FAIL ") + msg)
        if not ok:
            failures.append(msg)

    variants = [("relu", 1), ("topk", 1), ("batchtopk", 1), ("jumprelu", 1), ("relu", 0)]
    tmp = tempfile.mkdtemp(prefix="sae_ref_")
    for vi, (arch, nd) in enumerate(variants):
        tag = f"{arch}{'' if nd else '/no-norm'}"
        cfg, init, x = _problem(arch, seed=10 + vi, normalize_decoder=nd)
        paths = {n: os.path.join(tmp, f"{vi}_{n}") for n in ("cfg.json", "init.st", "data.st")}
        with open(paths["cfg.json"], "w") as f:
            json.dump(cfg, f)
        st_np.save(paths["init.st"], init)
        st_np.save(paths["data.st"], {"x": x})
        o1 = run_files(paths["cfg.json"], paths["init.st"], paths["data.st"], 1, os.path.join(tmp, f"{vi}_o1.st"))
        o20 = run_files(paths["cfg.json"], paths["init.st"], paths["data.st"], 20, os.path.join(tmp, f"{vi}_o20.st"))
        o20f = run_files(paths["cfg.json"], paths["init.st"], paths["data.st"], 20,
                         os.path.join(tmp, f"{vi}_o20f.st"), torch.float32)
        rd = st_np.load(os.path.join(tmp, f"{vi}_o20.st"))
        check(all(np.array_equal(rd[k], o20[k]) for k in o20) and set(rd) == set(o20),
              f"{tag}: out.safetensors round-trips ({len(rd)} tensors)")

        # (a) step-0 gradients vs central finite differences with the selection held fixed
        tr = Trainer(cfg, init, torch.float64)
        xn = torch.tensor(x[0], dtype=torch.float64)
        dead = tr.dead_since >= cfg["dead_tokens"]
        loss, info, g = tr.grads(xn)
        fixed = info["masks"]
        lf, _, gfix = tr.grads(xn, fixed)
        check(abs(loss.item() - lf.item()) <= 1e-13 * max(1.0, abs(loss.item())),
              f"{tag}: fixed-selection loss == training loss ({loss.item():.12g})")
        names4 = ["W_enc", "b_enc", "W_dec", "b_dec"]
        check(all(_rel(g[n], gfix[n]) < 1e-13 for n in names4),
              f"{tag}: training-path grads == fixed-selection grads")
        fd = _fd_grads(cfg, tr.P, xn, dead, fixed, names4)
        for n in names4:
            e = _rel(g[n], fd[n])
            check(e < 1e-7, f"{tag}: grad {n} vs finite differences: max|diff|/max|g| = {e:.2e} "
                  f"(max|g| {float(g[n].abs().max()):.3g})")
        for n in names4:
            check(_rel(o1["grad_" + n], g[n]) < 1e-6, f"{tag}: out grad_{n} (1-step run) == autograd")
        # the selection did not change under the FD perturbation (for the real path): probe a few
        with torch.no_grad():
            P = {n: p.clone() for n, p in tr.P.items()}
            P["W_enc"] += 1e-6
            _, inf2 = sae_loss(P, xn, cfg, dead)
            same = torch.equal(inf2["masks"]["z"], fixed["z"]) and (
                fixed["aux"] is None or torch.equal(inf2["masks"]["aux"], fixed["aux"]))
        check(same, f"{tag}: code selection stable under a 1e-6 perturbation")
        n_aux = 0 if fixed["aux"] is None else int(fixed["aux"].sum())
        check(n_aux > 0 and info["aux"].item() > 0, f"{tag}: AuxK active at step 0 ({n_aux} aux codes, "
              f"{int(dead.sum())} dead, aux {info['aux'].item():.4g})")

        # jumprelu: log_threshold gradient against a hand-written formula (numpy)
        if arch == "jumprelu":
            Wd = tr.P["W_dec"].numpy(); We = tr.P["W_enc"].numpy()
            be = tr.P["b_enc"].numpy(); bd = tr.P["b_dec"].numpy()
            th = np.exp(tr.P["log_threshold"].numpy()); X = xn.numpy(); Bn = X.shape[0]
            pre = (X - bd) @ We.T + be
            Hm = (pre > th).astype(np.float64)
            xh = (pre * Hm) @ Wd + bd
            dz = (2.0 / Bn) * (xh - X) @ Wd.T                 # dL_rec/dz (AuxK has no z path)
            K = (np.abs((pre - th) / cfg["jump_bandwidth"]) < 0.5).astype(np.float64)
            eps_ = cfg["jump_bandwidth"]
            gth = (dz * (-(th / eps_)) * K).sum(0) + (cfg["l0_coeff"] / Bn) * (-(1.0 / eps_) * K).sum(0)
            glt = gth * th
            e = _rel(g["log_threshold"].numpy(), glt)
            check(e < 1e-12 and np.abs(glt).max() > 0 and int(K.sum()) > 0,
                  f"{tag}: grad log_threshold vs hand formula: {e:.2e} ({int(K.sum())} entries in the kernel)")
            check(_rel(o1["grad_log_threshold"], glt) < 1e-6, f"{tag}: out grad_log_threshold == hand formula")

        # step mechanics: hand Adam == torch.optim.Adam; decoder projection and renorm; state
        tr2 = Trainer(cfg, init, torch.float64)
        Pt = {n: torch.nn.Parameter(p.clone()) for n, p in tr2.P.items()}
        opt = torch.optim.Adam(list(Pt.values()), lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"])
        worst = 0.0
        for s in range(3):
            r = tr2.step(x[s % x.shape[0]])
            # replay the same projected gradients through torch.optim.Adam
            gproj = {n: gi.clone() for n, gi in r["raw_grads"].items()}
            if nd:
                W = Pt["W_dec"].detach()
                gproj["W_dec"] = gproj["W_dec"] - (gproj["W_dec"] * W).sum(1, keepdim=True) * W
            for n, p in Pt.items():
                p.grad = gproj[n]
            opt.step()
            if nd:
                with torch.no_grad():
                    Pt["W_dec"].div_(Pt["W_dec"].norm(dim=1, keepdim=True))
            # the raw grads in r were taken at tr2's params, which must equal Pt's before the step
            worst = max(worst, max(_rel(tr2.P[n], Pt[n].detach()) for n in Pt))
        check(worst < 1e-14, f"{tag}: hand Adam == torch.optim.Adam over 3 steps ({worst:.1e})")
        if nd:
            nrm = np.linalg.norm(o20["W_dec"].astype(np.float64), axis=1)
            check(np.abs(nrm - 1).max() < 1e-6, f"{tag}: W_dec rows unit-norm after 20 steps")
        else:
            nrm = np.linalg.norm(o20["W_dec"].astype(np.float64), axis=1)
            check(np.abs(nrm - 1).max() > 1e-4, f"{tag}: W_dec rows drift from unit norm without normalisation")
        ds0 = init["dead_since"]
        fired = (o1["z0"] > 0).any(0)
        exp_ds = np.where(fired, 0.0, ds0 + x.shape[1])
        check(np.array_equal(o1["dead_since"], exp_ds.astype(np.float32)), f"{tag}: dead_since after 1 step")
        check(abs(o1["loss"][0] - o20["loss"][0]) == 0 and np.allclose(o1["loss_parts"].sum(1), o1["loss"], rtol=1e-6),
              f"{tag}: loss[0] consistent, parts sum to total")
        l0_0 = float((o1["z0"] > 0).sum(1).mean())
        check(abs(o1["l0"][0] - l0_0) < 1e-6, f"{tag}: l0[0] = {l0_0:.3f}")
        if arch == "topk":
            check(((o1["z0"] > 0).sum(1) <= cfg["k"]).all(), f"{tag}: at most k codes per row")
        if arch == "batchtopk":
            z0 = o1["z0"]
            npos = int((z0 > 0).sum())
            check(npos == cfg["k"] * x.shape[1], f"{tag}: k*B = {npos} codes in the batch")
            mn = float(z0[z0 > 0].min())
            check(abs(o1["theta"][0] - mn) < 1e-6 * mn and o1["theta_initialized"][0] == 1,
                  f"{tag}: theta set to min kept value on the first step ({mn:.6g})")
            # theta over 20 steps: recompute the running mean from the codes of each step
            trc = Trainer(cfg, init, torch.float64)
            th = None
            for s in range(20):
                r = trc.step(x[s % x.shape[0]])
                zz = r["z"]
                m_ = zz[zz > 0].min().item()
                th = m_ if th is None else (1 - cfg["theta_momentum"]) * th + cfg["theta_momentum"] * m_
            check(abs(o20["theta"][0] - th) < 1e-6 * th, f"{tag}: theta running mean after 20 steps ({th:.6g})")

        # (b) float32 vs float64 over 20 steps
        worst, worst_name = 0.0, ""
        for n in o20:
            if n in ("theta_initialized",):
                continue
            e = _rel(o20f[n], o20[n])
            if verbose:
                print(f"       {tag}: f32 vs f64 {n}: {e:.2e}")
            if e > worst:
                worst, worst_name = e, n
        check(np.array_equal(o20f["dead_since"], o20["dead_since"]), f"{tag}: f32/f64 dead_since identical")
        check(worst < 2e-5, f"{tag}: float32 vs float64 over 20 steps: worst rel {worst:.2e} ({worst_name})")
        lp = o20["loss"]
        print(f"       {tag}: loss {lp[0]:.5f} -> {lp[-1]:.5f}, parts[0] {o20['loss_parts'][0].tolist()}, "
              f"l0 {o20['l0'][0]:.2f} -> {o20['l0'][-1]:.2f}")

    shutil.rmtree(tmp, ignore_errors=True)
    n_checks = "all" if not failures else f"{len(failures)} failed"
    print(f"selftest: {n_checks}")
    return 0 if not failures else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cfg")
    ap.add_argument("--init")
    ap.add_argument("--data")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--out")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    if a.selftest:
        return selftest(a.verbose)
    if not (a.cfg and a.init and a.data and a.out):
        ap.error("--cfg, --init, --data and --out are required (or --selftest)")
    run_files(a.cfg, a.init, a.data, a.steps, a.out, getattr(torch, a.dtype))
    return 0


if __name__ == "__main__":
    sys.exit(main())
