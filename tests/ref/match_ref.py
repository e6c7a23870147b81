"""match_ref.py — the independent reference for loupe's matching: numpy
max-cosine (both directions) and scipy's linear_sum_assignment.

  match_ref.py assign C.f32 N M OUT      minimise: writes OUT.col (int64 [N]) and OUT.total (text)
  match_ref.py maxcos A.f32 NA B.f32 NB D OUT
                                         writes OUT.best_a/.arg_a/.best_b/.arg_b
"""
import sys
import time

import numpy as np
from scipy.optimize import linear_sum_assignment


def maxcos(A, B, out):
    An = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-30)
    Bn = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-30)
    S = An.astype(np.float64) @ Bn.astype(np.float64).T
    S.max(axis=1).astype(np.float32).tofile(out + ".best_a")
    S.argmax(axis=1).astype(np.int32).tofile(out + ".arg_a")
    S.max(axis=0).astype(np.float32).tofile(out + ".best_b")
    S.argmax(axis=0).astype(np.int32).tofile(out + ".arg_b")
    return S


def assign(C, out):
    t0 = time.time()
    r, c = linear_sum_assignment(C)
    dt = time.time() - t0
    col = -np.ones(C.shape[0], dtype=np.int64)
    col[r] = c
    col.tofile(out + ".col")
    with open(out + ".total", "w") as f:
        f.write("%.10g %.6f\n" % (C[r, c].astype(np.float64).sum(), dt))


def main():
    cmd = sys.argv[1]
    if cmd == "assign":
        n, m = int(sys.argv[3]), int(sys.argv[4])
        C = np.fromfile(sys.argv[2], dtype=np.float32).reshape(n, m)
        assign(C, sys.argv[5])
    elif cmd == "maxcos":
        na, nb, d = int(sys.argv[3]), int(sys.argv[5]), int(sys.argv[6])
        A = np.fromfile(sys.argv[2], dtype=np.float32).reshape(na, d)
        B = np.fromfile(sys.argv[4], dtype=np.float32).reshape(nb, d)
        maxcos(A, B, sys.argv[7])
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main()
