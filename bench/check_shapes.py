#!/usr/bin/python3
"""bench/check_shapes.py: kiln's shape inference against ONNX's own, on the model set.

    /usr/bin/python3 bench/check_shapes.py [--kiln PATH] [--details N] [MODEL.onnx...]

MODEL defaults to every build/bench-models/*.onnx (bench/make_models.py). For each model it
runs onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True) and
`kiln info --shapes MODEL` (inputs as declared: dynamic models keep their symbolic dims),
and compares the type of every value ONNX gives one to (graph inputs, value_info, graph
outputs; initializers are not counted). Per value:

    agree        same dtype, same rank, every dim equal: ints equal, or both symbolic
                 (names may differ: ONNX's unk__N / data_prop names and kiln's N, seq+1, ...)
    disagree     dtype, rank or an int dim differ: a bug on one side, listed
    int/sym      one side has an int where the other has a symbol (listed; not a
                 contradiction, but one side knows more)
    onnx-unknown ONNX gives no type, no shape, or an unknown dim (no value, no name)
                 where kiln knows it
    kiln-unknown kiln has no type, no rank, or '?' where ONNX knows the dim

A value both sides leave partly unknown counts once, in the first category that applies
in the order above. Prints a Markdown table, then the listed values (--details N per
model and category, default 10). Exits 1 if any value disagrees.
"""
import argparse
import glob
import os
import re
import subprocess
import sys

import onnx
from onnx import shape_inference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
    14: "complex64", 15: "complex128", 16: "bfloat16",
}


def onnx_types(model):
    """name -> None (no tensor type) or (dtype, dims or None); dims: int, str or None."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    out = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.name in inits:
            continue
        t = vi.type
        if t.WhichOneof("value") != "tensor_type":
            out.setdefault(vi.name, None)
            continue
        tt = t.tensor_type
        dtype = DTYPES.get(tt.elem_type, "elem%d" % tt.elem_type) if tt.elem_type else None
        dims = None
        if tt.HasField("shape"):
            dims = []
            for d in tt.shape.dim:
                k = d.WhichOneof("value")
                dims.append(d.dim_value if k == "dim_value" else d.dim_param if k == "dim_param" and d.dim_param else None)
        out[vi.name] = (dtype, dims)
    return out, inits


def split_dims(s):
    """Splits "a,b,(c,d)" at top-level commas."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur or parts:
        parts.append(cur)
    return parts


TYPE_RE = re.compile(r"^([a-z][a-z0-9]*)(?:\[(.*)\])?$")


def kiln_types(kiln, path):
    r = subprocess.run([kiln, "info", "--shapes", path], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("kiln info --shapes failed: " + (r.stderr.strip().splitlines() or ["?"])[0])
    out = {}
    in_values = False
    for line in r.stdout.splitlines():
        if line.startswith("values ("):
            in_values = True
            continue
        if not in_values:
            continue
        if not line.startswith("  "):
            break
        m = re.match(r"^  (\S+)\s+(.*)$", line)
        if not m:
            continue
        name, t = m.group(1), m.group(2).strip()
        if t.endswith(" (data-dependent)"):
            t = t[: -len(" (data-dependent)")]
        tm = TYPE_RE.match(t)
        if not tm:
            out[name] = None  # unknown, or not a tensor
            continue
        dims = None
        if tm.group(2) is not None:
            dims = []
            for d in split_dims(tm.group(2)) if tm.group(2) != "" else []:
                d = d.strip()
                dims.append(int(d) if re.fullmatch(r"-?\d+", d) else None if d == "?" else d)
        out[name] = (tm.group(1), dims)
    return out


def fmt(t):
    if t is None:
        return "(none)"
    dtype, dims = t
    if dims is None:
        return "%s[rank ?]" % dtype
    return "%s[%s]" % (dtype, ",".join("?" if d is None else str(d) for d in dims))


def classify(o, k):
    """Category of one value: ONNX type o (not None), kiln type k."""
    if k is None:
        return "kiln-unknown"
    od, odims = o
    kd, kdims = k
    if od is None:
        return "onnx-unknown"
    if od != kd:
        return "disagree"
    if odims is not None and kdims is not None:
        if len(odims) != len(kdims):
            return "disagree"
        mixed = onnx_unk = kiln_unk = False
        for a, b in zip(odims, kdims):
            if isinstance(a, int) and isinstance(b, int):
                if a != b:
                    return "disagree"
            elif a is None and b is None:
                continue
            elif a is None:
                onnx_unk = True
            elif b is None:
                kiln_unk = True
            elif isinstance(a, int) != isinstance(b, int):
                mixed = True
        if mixed:
            return "int/sym"
        if onnx_unk:
            return "onnx-unknown"
        if kiln_unk:
            return "kiln-unknown"
        return "agree"
    if odims is None and kdims is not None:
        return "onnx-unknown"
    if kdims is None and odims is not None:
        return "kiln-unknown"
    return "agree"


CATS = ["agree", "disagree", "int/sym", "onnx-unknown", "kiln-unknown"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kiln", default=os.environ.get("KILN", os.path.join(ROOT, "build/release/kiln")))
    ap.add_argument("--details", type=int, default=10)
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    models = a.models or sorted(glob.glob(os.path.join(ROOT, "build/bench-models/*.onnx")))
    if not models:
        sys.exit("check_shapes.py: no models; run /usr/bin/python3 bench/make_models.py")
    print("onnx %s shape_inference.infer_shapes(strict_mode=False, data_prop=True) vs %s info --shapes"
          % (onnx.__version__, a.kiln))
    print()
    print("| model | values compared | agree | disagree | int/sym | onnx-unknown | kiln-unknown |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    details = []
    status = 0
    for path in models:
        name = os.path.basename(path)[: -len(".onnx")]
        try:
            m = onnx.load(path)
            inferred = shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
            del m
            otypes, inits = onnx_types(inferred)
            del inferred
            ktypes = kiln_types(a.kiln, path)
        except Exception as e:  # a failing side is a row, never skipped
            print("| %s | fails: %s | | | | | |" % (name, str(e).splitlines()[0][:150].replace("|", "\\|")))
            status = 1
            continue
        counts = {c: 0 for c in CATS}
        listed = {c: [] for c in CATS}
        # kiln values ONNX does not type at all: onnx-unknown (when kiln knows them)
        for v, kt in ktypes.items():
            if v in inits:
                continue
            if v in otypes and otypes[v] is not None:
                c = classify(otypes[v], kt)
            elif kt is not None:
                c = "onnx-unknown"
            else:
                continue
            counts[c] += 1
            if c != "agree":
                listed[c].append("%s: onnx %s, kiln %s" % (v, fmt(otypes.get(v)), fmt(kt)))
        for v, ot in otypes.items():  # typed by ONNX, absent from kiln's list
            if v not in ktypes and ot is not None:
                counts["kiln-unknown"] += 1
                listed["kiln-unknown"].append("%s: onnx %s, not in kiln's values" % (v, fmt(ot)))
        total = sum(counts.values())
        if counts["disagree"]:
            status = 1
        print("| %s | %d | %s |" % (name, total, " | ".join(str(counts[c]) for c in CATS)))
        for c in CATS[1:]:
            if listed[c]:
                details.append("%s, %s (%d):" % (name, c, len(listed[c])))
                for line in listed[c][: a.details]:
                    details.append("    " + line)
                if len(listed[c]) > a.details:
                    details.append("    ... %d more" % (len(listed[c]) - a.details))
        sys.stdout.flush()
    if details:
        print()
        print("\n".join(details))
    return status


if __name__ == "__main__":
    sys.exit(main())
