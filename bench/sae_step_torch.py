#!/usr/bin/python3
"""sae_step_torch.py — PyTorch side of bench/sae_step: the same TopK SAE
training step as loupe's (pre = (x - b_dec) W_enc^T + b_enc, top-k of
ReLU(pre), decoder through embedding_bag with per-sample weights, MSE summed
over dims and averaged over rows, Adam, decoder gradient projection and row
renormalisation), float32, best of N timed steps after a warm-up.
Prints `torch_ms=… peak_mib=…` last."""
import argparse, resource, time
import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument('--iters', type=int, default=5)
ap.add_argument('--threads', type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
d, Fl, k, B = 512, 16384, 32, 4096
W_dec = torch.randn(Fl, d); W_dec /= W_dec.norm(dim=1, keepdim=True)
W_dec = torch.nn.Parameter(W_dec)
W_enc = torch.nn.Parameter(W_dec.detach().clone())
b_enc = torch.nn.Parameter(torch.zeros(Fl))
b_dec = torch.nn.Parameter(torch.zeros(d))
opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=1e-3)
x = torch.randn(B, d)

def step():
    pre = F.linear(x - b_dec, W_enc, b_enc)
    val, idx = torch.topk(F.relu(pre), k, dim=1, sorted=False)
    xhat = F.embedding_bag(idx, W_dec, per_sample_weights=val, mode='sum') + b_dec
    loss = (xhat - x).pow(2).sum(-1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        g = W_dec.grad
        g -= (g * W_dec).sum(1, keepdim=True) * W_dec
    opt.step()
    with torch.no_grad():
        W_dec.div_(W_dec.norm(dim=1, keepdim=True))

step()
best = 1e30
for _ in range(a.iters):
    t0 = time.perf_counter(); step(); best = min(best, time.perf_counter() - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f'torch_ms={best*1e3:.2f} peak_mib={peak:.0f} threads={a.threads} torch={torch.__version__}')
