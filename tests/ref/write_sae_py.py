#!/usr/bin/python3
"""write_sae_py.py - an independent numpy writer/reader of SAELens and sparsify SAE
directories, and reference encodings, for tests/test_sae_format_py.sh.

Nothing here comes from loupe: the safetensors writer/reader below follow the format
spec (u64 LE header length, JSON header {name: {dtype, shape, data_offsets}} plus
optional "__metadata__", then the packed little-endian data), and the encoders
follow the two libraries' documented forward passes:

  SAELens:  sae_in = x - b_dec  (only if apply_b_dec_to_input)
            pre = sae_in @ W_enc + b_enc                W_enc [d_in, d_sae]
            standard: relu(pre)
            topk:     (pre * |W_dec[f]| if rescale_acts_by_decoder_norm) -> keep the
                      k largest, then relu
            jumprelu: relu(pre) * (pre > relu(threshold))
  sparsify: pre = relu((x - b_dec) @ encoder.weight.T + encoder.bias), keep k largest

Usage:
  write_sae_py.py write OUT   writes OUT/x.f32, OUT/py_*/ (SAE dirs in both layouts,
                              several dtypes and cfg.json vintages, all from the same
                              random weights) and OUT/ref_py_*.f32 (numpy latents)
  write_sae_py.py check OUT   compares OUT/out_py_*.f32 (loupe's encodings of py_*)
                              with the references, and reads loupe-written OUT/lp_*
                              dirs with this reader: cfg.json fields, tensor shapes,
                              and latents by the library's math vs OUT/lpz_*.f32
"""
import json
import os
import struct
import sys

import numpy as np

D, F, K, B = 16, 64, 8, 64
RTOL = 1e-5

# ---- safetensors, from the spec ---------------------------------------------

_NP = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8")}


def bf16_bits(a):
    """float32 -> bf16 bit patterns, round to nearest even."""
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2")


def bf16_value(a):
    return (bf16_bits(a).astype(np.uint32) << 16).view(np.float32)


def st_save(path, tensors, metadata=None):
    """tensors: name -> (dtype name, float array)."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name in sorted(tensors):
        dt, arr = tensors[name]
        if dt == "BF16":
            data = bf16_bits(arr).tobytes()
        else:
            data = np.ascontiguousarray(arr, dtype=_NP[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": list(np.shape(arr)), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def st_load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    out, base = {}, 8 + n
    for name, e in header.items():
        b, end = e["data_offsets"]
        buf = raw[base + b:base + end]
        if e["dtype"] == "BF16":
            arr = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(buf, _NP[e["dtype"]])
        out[name] = arr.reshape(e["shape"]).astype(np.float64)
    return out, meta


# ---- reference encoders --------------------------------------------------------

def relu(a):
    return np.maximum(a, 0.0)


def keep_topk(pre, k):
    z = np.zeros_like(pre)
    idx = np.argsort(-pre, axis=1, kind="stable")[:, :k]
    rows = np.arange(pre.shape[0])[:, None]
    z[rows, idx] = pre[rows, idx]
    return z


def saelens_encode(cfg, t, x):
    md = cfg.get("metadata") or {}
    arch = cfg.get("architecture", "standard")
    act = cfg.get("activation_fn_str") or cfg.get("activation_fn") or "relu"
    sae_in = x - t["b_dec"] if cfg.get("apply_b_dec_to_input", True) else x
    pre = sae_in @ t["W_enc"] + t["b_enc"]
    del md
    if arch == "jumprelu":
        return relu(pre) * (pre > relu(t["threshold"]))
    if arch == "topk" or act == "topk":
        k = cfg.get("k") or cfg["activation_fn_kwargs"]["k"]
        if cfg.get("rescale_acts_by_decoder_norm"):
            pre = pre * np.linalg.norm(t["W_dec"], axis=1)
        return relu(keep_topk(pre, k))
    return relu(pre)


def sparsify_encode(cfg, t, x):
    pre = relu((x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
    return keep_topk(pre, cfg["k"])


def close(got, want):
    atol = RTOL * max(1.0, float(np.abs(want).max()))
    bad = np.abs(got - want) > RTOL * np.abs(want) + atol
    return int(bad.sum()), float(np.abs(got - want).max())


# ---- write ---------------------------------------------------------------------

def write(out):
    rng = np.random.default_rng(20240611)
    W_enc = (0.4 * rng.standard_normal((F, D))).astype(np.float32)   # [F, d]
    b_enc = (0.2 * rng.standard_normal(F)).astype(np.float32)
    W_dec = rng.standard_normal((F, D))
    W_dec = (W_dec / np.linalg.norm(W_dec, axis=1, keepdims=True)).astype(np.float32)
    b_dec = (0.3 * rng.standard_normal(D)).astype(np.float32)
    thr = (0.05 + 0.6 * rng.random(F)).astype(np.float32)
    thr[3] = -0.1  # SAELens clamps a negative threshold to 0
    x = rng.standard_normal((B, D)).astype(np.float32)
    x.tofile(os.path.join(out, "x.f32"))
    xd = x.astype(np.float64)
    # decoder rows of non-unit norm for the rescale_acts_by_decoder_norm case
    W_dec_scaled = (W_dec * (0.5 + rng.random((F, 1)))).astype(np.float32)

    v5 = {  # a flat, pre-6.0 SAELens cfg.json
        "d_in": D, "d_sae": F, "dtype": "float32", "device": "cpu",
        "model_name": "tiny-test", "hook_name": "blocks.1.hook_resid_post", "hook_layer": 1,
        "hook_head_index": None, "activation_fn_kwargs": {}, "apply_b_dec_to_input": True,
        "finetuning_scaling_factor": False, "sae_lens_training_version": "3.20.3",
        "prepend_bos": True, "dataset_path": "py/dataset", "dataset_trust_remote_code": True,
        "context_size": 128, "normalize_activations": "none", "neuronpedia_id": None,
        "model_from_pretrained_kwargs": {},
    }
    v6_meta = {
        "sae_lens_version": "6.5.1", "sae_lens_training_version": "6.5.1", "model_name": "tiny-test",
        "hook_name": "blocks.2.hook_mlp_out", "hook_head_index": None, "context_size": 128,
        "dataset_path": "py/dataset6", "prepend_bos": True, "model_from_pretrained_kwargs": {},
    }

    def v6(arch, **kw):
        c = {"d_in": D, "d_sae": F, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
             "normalize_activations": "none", "reshape_activations": "none", "metadata": dict(v6_meta),
             "architecture": arch}
        c.update(kw)
        return c

    def saelens(name, cfg, dt="F32", wdec=W_dec, threshold=None):
        tensors = {"W_enc": (dt, W_enc.T), "b_enc": (dt, b_enc), "W_dec": (dt, wdec), "b_dec": (dt, b_dec)}
        if threshold is not None:
            tensors["threshold"] = (dt, threshold)
        emit(name, cfg, "sae_weights.safetensors", tensors, saelens_encode)

    def sparsify(name, cfg, dt="F32"):
        tensors = {"encoder.weight": (dt, W_enc), "encoder.bias": (dt, b_enc), "W_dec": (dt, W_dec),
                   "b_dec": (dt, b_dec)}
        emit(name, cfg, "sae.safetensors", tensors, sparsify_encode)

    def emit(name, cfg, wname, tensors, encode):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "cfg.json"), "w") as f:
            json.dump(cfg, f)
        st_save(os.path.join(d, wname), tensors, {"format": "pt"})
        t, _ = st_load(os.path.join(d, wname))  # the values as stored (f16/bf16 rounding)
        encode(cfg, t, xd).astype("<f4").tofile(os.path.join(out, "ref_" + name + ".f32"))

    saelens("py_saelens_relu", dict(v5, architecture="standard", activation_fn_str="relu"))
    saelens("py_saelens_relu_bf16", dict(v5, architecture="standard", activation_fn_str="relu", dtype="bfloat16"),
            dt="BF16")
    saelens("py_saelens_topk", dict(v5, architecture="standard", activation_fn_str="topk",
                                    activation_fn_kwargs={"k": K}))
    saelens("py_saelens_topk_v6", v6("topk", k=K, rescale_acts_by_decoder_norm=True), wdec=W_dec_scaled)
    saelens("py_saelens_jumprelu", dict(v5, architecture="jumprelu", activation_fn_str="relu"), threshold=thr)
    saelens("py_saelens_jumprelu_v6_nobdec", v6("jumprelu", apply_b_dec_to_input=False), threshold=thr)
    sp = {"activation": "topk", "expansion_factor": F // D, "normalize_decoder": True, "num_latents": 0,
          "k": K, "multi_topk": False, "skip_connection": False, "transcode": False, "d_in": D}
    sparsify("py_sparsify_topk", sp)
    old = {"expansion_factor": 32, "normalize_decoder": True, "num_latents": F, "k": K, "multi_topk": False,
           "skip_connection": False, "d_in": D}  # an older sparsify cfg.json (no activation/transcode)
    sparsify("py_sparsify_topk_f16", old, dt="F16")


# ---- check ---------------------------------------------------------------------

def check(out):
    fails = []
    x = np.fromfile(os.path.join(out, "x.f32"), "<f4").reshape(-1, D).astype(np.float64)
    names = sorted(n for n in os.listdir(out) if n.startswith("py_"))
    for n in names:
        want = np.fromfile(os.path.join(out, "ref_" + n + ".f32"), "<f4").reshape(B, F)
        got = np.fromfile(os.path.join(out, "out_" + n + ".f32"), "<f4").reshape(B, F)
        nbad, err = close(got, want)
        nnz = int((want != 0).sum())
        print(f"{n}: {nnz} nonzero latents, max |loupe - numpy| = {err:.3g}")
        if nbad or not (B <= nnz < B * F):
            fails.append(f"{n}: {nbad} latents differ (nnz {nnz})")

    for n in sorted(x for x in os.listdir(out) if x.startswith("lp_")):
        d = os.path.join(out, n)
        with open(os.path.join(d, "cfg.json")) as f:
            cfg = json.load(f)
        lo = cfg["loupe"]
        arch = lo["arch"]
        lpz = np.fromfile(os.path.join(out, "lpz_" + n[3:] + ".f32"), "<f4").reshape(-1, F)
        if os.path.exists(os.path.join(d, "sae_weights.safetensors")):
            t, meta = st_load(os.path.join(d, "sae_weights.safetensors"))
            expect_arch = {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu"}[arch]
            ok = (cfg["architecture"] == expect_arch and cfg["d_in"] == D and cfg["d_sae"] == F
                  and cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
                  and cfg["hook_name"] == "blocks.3.hook_resid_post" and cfg["hook_layer"] == 3
                  and cfg["dtype"] == "float32" and meta.get("loupe_arch") == arch
                  and t["W_enc"].shape == (D, F) and t["W_dec"].shape == (F, D)
                  and t["b_enc"].shape == (F,) and t["b_dec"].shape == (D,))
            if arch == "topk":
                ok = ok and cfg["k"] == K and cfg["activation_fn_kwargs"] == {"k": K}
            if arch in ("batchtopk", "jumprelu"):
                ok = ok and t["threshold"].shape == (F,)
            if arch == "batchtopk":
                ok = ok and np.all(t["threshold"] == t["threshold"][0])
            z = saelens_encode(cfg, t, x)
        else:
            t, meta = st_load(os.path.join(d, "sae.safetensors"))
            ok = (cfg["d_in"] == D and cfg["num_latents"] == F and cfg["k"] == K and meta.get("loupe_arch") == arch
                  and cfg["skip_connection"] is False and cfg["transcode"] is False
                  and t["encoder.weight"].shape == (F, D) and t["W_dec"].shape == (F, D))
            if arch == "topk":
                ok = ok and cfg["activation"] == "topk"
                z = sparsify_encode(cfg, t, x)
            else:
                # not a sparsify architecture: marked so sparsify refuses it; the
                # weights follow the same math with loupe's threshold rule
                ok = ok and cfg["activation"] == arch
                pre = (x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"]
                z = relu(pre) if arch == "relu" else pre * (pre > t["threshold"])
        nbad, err = close(lpz, z)
        print(f"{n}: cfg {'ok' if ok else 'WRONG'}, max |loupe - file math| = {err:.3g}")
        if not ok:
            fails.append(f"{n}: cfg.json/tensors not as expected")
        if nbad:
            fails.append(f"{n}: {nbad} latents differ from the file's math")
    for f in fails:
        print("FAIL", f)
    return 1 if fails else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        sys.exit(check(sys.argv[2]))
