#!/usr/bin/python3
"""st_np.py - a tiny safetensors reader/writer on numpy, written from the format spec.

File layout: u64 little-endian N = header length; N bytes of UTF-8 JSON
  {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
   "__metadata__": {"str": "str", ...}}   (optional metadata, string values only)
then the byte buffer; offsets are relative to the start of that buffer, tensors are
row-major little-endian.  The writer pads the header with spaces so the data starts
8-byte aligned, and lays tensors out in sorted-name order without gaps.

API:
  load(path) -> dict name -> np.ndarray (BF16 comes back as float32; others as themselves)
  load_header(path) -> (header dict without __metadata__, metadata dict, data start offset)
  save(path, tensors: dict name -> array, metadata: dict | None = None)
"""
import json
import struct

import numpy as np

_DT = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
    "BF16": np.dtype("<u2"),  # raw bits; widened to float32 on load
}
_NAME = {v: k for k, v in _DT.items() if k != "BF16"}


def load_header(path):
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: too short for a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if n > 100 * 1024 * 1024:
            raise ValueError(f"{path}: implausible header length {n}")
        hdr = json.loads(f.read(n).decode("utf-8"))
    meta = hdr.pop("__metadata__", None) or {}
    return hdr, meta, 8 + n


def load(path, names=None):
    hdr, _meta, start = load_header(path)
    out = {}
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        for name, info in hdr.items():
            if names is not None and name not in names:
                continue
            dt = info["dtype"]
            if dt not in _DT:
                raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
            shape = tuple(int(s) for s in info["shape"])
            b, e = (int(x) for x in info["data_offsets"])
            nel = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if e - b != nel * _DT[dt].itemsize or b < 0 or start + e > size:
                raise ValueError(f"{path}: tensor {name}: bad data_offsets {b},{e} for {dt}{list(shape)}")
            f.seek(start + b)
            arr = np.frombuffer(f.read(e - b), dtype=_DT[dt]).reshape(shape)
            if dt == "BF16":
                arr = (arr.astype(np.uint32) << 16).view(np.float32).reshape(shape)
            out[name] = arr.copy()
    return out


def save(path, tensors, metadata=None):
    hdr = {}
    if metadata:
        hdr["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder in ("<", ">", "=") else a.dtype
        if dt not in _NAME:
            raise ValueError(f"tensor {name}: unsupported numpy dtype {a.dtype}")
        data = np.ascontiguousarray(a, dtype=dt).tobytes()
        hdr[name] = {"dtype": _NAME[dt], "shape": list(a.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-(8 + len(h))) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for d in blobs:
            f.write(d)


if __name__ == "__main__":
    import sys
    for p in sys.argv[1:]:
        hdr, meta, _ = load_header(p)
        print(p, meta)
        for k in sorted(hdr):
            print(f"  {k}: {hdr[k]['dtype']} {hdr[k]['shape']}")
