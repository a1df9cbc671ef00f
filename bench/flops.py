#!/usr/bin/python3
"""bench/flops.py: the arithmetic of each benchmark model, and how close each engine runs to
the machine's peak (a measuring tool, not a test).

    /usr/bin/python3 bench/flops.py [--kiln PATH] [--peak GFLOPS] [--table COMPARE.md] [MODEL.onnx...]

MODEL defaults to every build/bench-models/*.onnx (bench/make_models.py). A model with
symbolic input dims takes the shapes in NAME.shapes next to it (as bench/compare.sh does).
The shapes are kiln's (`kiln info --shape NAME=DIMS ...`, default build/release/kiln, or
--kiln PATH: ONNX's shape inference leaves ShuffleNetV2's convolutions after its channel
shuffle unknown); the graph is read with python3-onnx, without the weights.

Counted, as multiply-adds x 2 (the float operations of a direct computation; Winograd and
other fast algorithms do fewer): Conv and ConvTranspose (every output times C/group x kernel
taps; ConvTranspose counted on its input), MatMul and Gemm (M x K x N per batch), LSTM, GRU
and RNN (the input and recurrent products of every step). Everything else (element-wise,
normalization, softmax, pooling) is left out: it is memory-bound and small next to these.

Without --table, prints each model's GFLOP and the share of it in nodes whose shapes were
unknown (0 on the bench set). With --table COMPARE.md (bench/compare.sh's output) and
--peak P (one core's float32 FMA peak in GFLOP/s, measured on the machine), also each
engine's achieved GFLOP/s per thread at each thread count, and the bound on the ratio
ORT/kiln for a kiln that ran every direct product at the peak: ORT's time over GFLOP / (P x
threads). A ratio above the bound needs fewer operations than the direct computation
(kiln's Winograd convolutions) or a model not bound by arithmetic (memory, overheads).
"""
import argparse
import glob
import math
import os
import re
import sys

import subprocess

import onnx


def read_shapes(path):
    shapes = {}
    p = os.path.splitext(path)[0] + ".shapes"
    if os.path.exists(p):
        for line in open(p):
            line = line.strip()
            if line and "=" in line:
                name, dims = line.split("=", 1)
                shapes[name] = [int(d) for d in dims.split("x")]
    return shapes


def shape_map(kiln, path, shapes):
    """value name -> dims (None for an unknown dim) from `kiln info --shapes`."""
    fixed = [f"--shape={n}={'x'.join(map(str, d))}" for n, d in shapes.items()]
    cmd = [kiln, "info", "--shapes"] + fixed + [path]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    out, on = {}, False
    for line in text.splitlines():
        if line.startswith("values ("):
            on = True
            continue
        m = re.fullmatch(r"\s+(\S+)\s+\w+\[([^\]]*)\]", line) if on else None
        if m:
            dims = m.group(2).split(",") if m.group(2) else []
            out[m.group(1)] = [int(d) if re.fullmatch(r"\d+", d) else None for d in dims]
    return out


def attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def prod(xs):
    r = 1
    for x in xs:
        r *= x
    return r


def node_flops(node, shp):
    """Float operations of one node, or None when a shape it needs is unknown; 0 for ops not
    counted."""
    ins = [shp.get(n) if n else None for n in node.input]
    outs = [shp.get(n) for n in node.output]

    def known(*ts):
        return all(t is not None and all(d is not None for d in t) for t in ts)

    op = node.op_type
    if op in ("Conv", "ConvTranspose"):
        x, w, y = ins[0], ins[1], outs[0]
        if not known(x, w, y):
            return None
        taps = prod(w[2:])  # W's dim 1 is already per group
        if op == "Conv":  # W [M, C/group, k...]: each output, C/group x taps
            return 2 * prod(y) * w[1] * taps
        # ConvTranspose: W [C, M/group, k...]: each input, M/group x taps
        return 2 * prod(x) * w[1] * taps
    if op == "MatMul":
        a, b = ins[0], ins[1]
        if not known(a, b):
            return None
        if len(a) == 1:
            a = [1] + a
        if len(b) == 1:
            b = b + [1]
        batch = outs[0][:-2] if known(outs[0]) and len(outs[0]) >= 2 else a[:-2]
        return 2 * prod(batch) * a[-2] * a[-1] * b[-1]
    if op == "Gemm":
        a, b = ins[0], ins[1]
        if not known(a, b):
            return None
        M, K = (a[1], a[0]) if attr(node, "transA", 0) else (a[0], a[1])
        N = b[0] if attr(node, "transB", 0) else b[1]
        return 2 * M * K * N
    if op in ("LSTM", "GRU", "RNN"):
        x, w, r = ins[0], ins[1], ins[2]
        if not known(x, w, r):
            return None
        layout = attr(node, "layout", 0)
        seq, batch = (x[1], x[0]) if layout else (x[0], x[1])
        dirs, gh, inp = w
        hidden = r[2]
        return 2 * dirs * seq * batch * gh * (inp + hidden)
    return 0


def model_flops(kiln, path):
    model = onnx.load(path, load_external_data=False)
    shp = shape_map(kiln, path, read_shapes(path))
    total = unknown = 0
    for node in model.graph.node:
        f = node_flops(node, shp)
        if f is None:
            unknown += 1
        else:
            total += f
    return total, unknown


def read_table(path):
    """(model, threads) -> (kiln ms, ORT ms) from bench/compare.sh's Markdown table."""
    rows = {}
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.fullmatch(r"\d+", cells[1]) and re.fullmatch(r"[\d.]+", cells[2]):
            rows[(cells[0], int(cells[1]))] = (float(cells[2]), float(cells[3]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kiln", default=os.environ.get("KILN", "build/release/kiln"))
    ap.add_argument("--peak", type=float, help="one core's float32 FMA peak, GFLOP/s")
    ap.add_argument("--table", help="bench/compare.sh output (Markdown)")
    ap.add_argument("models", nargs="*")
    args = ap.parse_args()
    if args.table and not args.peak:
        ap.error("--table needs --peak")
    models = args.models or sorted(glob.glob("build/bench-models/*.onnx"))
    if not models:
        sys.exit("no models: run bench/make_models.py first")
    table = read_table(args.table) if args.table else {}
    if table:
        print("| model | threads | GFLOP | kiln ms | kiln GFLOP/s a thread | ORT ms | ORT GFLOP/s a thread "
              "| ORT/kiln | bound at the peak |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    else:
        print("| model | GFLOP | nodes with unknown shapes |")
        print("|---|---:|---:|")
    bounds = {}
    for path in models:
        name = os.path.splitext(os.path.basename(path))[0]
        flops, unknown = model_flops(args.kiln, path)
        g = flops / 1e9
        if not table:
            print(f"| {name} | {g:.3f} | {unknown} |")
            continue
        for (m, t), (k_ms, o_ms) in sorted(table.items()):
            if m != name:
                continue
            kr = g / (k_ms / 1e3) / t
            orr = g / (o_ms / 1e3) / t
            bound = o_ms / (g / (args.peak * t) * 1e3) if g > 0 else float("inf")
            bounds.setdefault(t, []).append(bound)
            print(f"| {name} | {t} | {g:.3f} | {k_ms} | {kr:.1f} | {o_ms} | {orr:.1f} | {o_ms / k_ms:.2f} "
                  f"| {bound:.2f} |")
    for t, b in sorted(bounds.items()):
        gm = math.exp(sum(math.log(x) for x in b) / len(b))
        print(f"\nThreads {t}: geometric mean of the bounds over {len(b)} models {gm:.2f}")


if __name__ == "__main__":
    main()
