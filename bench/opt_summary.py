#!/usr/bin/python3
"""bench/opt_summary.py: helpers of bench/check_optimized.sh (not meant to be run alone).

    opt_summary.py check STD.onnx
        onnx.checker.check_model(m, full_check=True); prints "ok" or "fails: MESSAGE"
    opt_summary.py ops MODEL.onnx
        one line of op-histogram highlights of the main graph: BatchNormalization left,
        Convs (Conv / kiln.FusedConv) with and without an activation, and the counts of
        Attention, LayerNormalization, Gelu (any domain)
    opt_summary.py maxerr DIR REFDIR
        the largest |a - b| over DIR/output_K.npy against REFDIR/output_K.npy (floats),
        and the largest |a - b| / (atol + |b|) with atol 1e-5, as "ABS REL"
"""
import glob
import os
import sys


def check(path):
    import onnx
    try:
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
        print("ok")
    except Exception as e:
        print("fails: " + " ".join(str(e).split())[:200])


def ops(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    g = m.graph
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    hist = {}
    conv_act = conv_plain = 0
    plain_then_act = 0
    for n in g.node:
        key = n.op_type
        hist[key] = hist.get(key, 0) + 1
        if n.op_type in ("Conv", "FusedConv"):
            act = ""
            for a in n.attribute:
                if a.name == "activation":
                    act = a.s.decode()
            if act:
                conv_act += 1
            else:
                conv_plain += 1
                cs = consumers.get(n.output[0], [])
                if any(c.op_type in ("Relu", "Clip", "Sigmoid", "HardSwish", "LeakyRelu", "Tanh") for c in cs):
                    plain_then_act += 1
    parts = []
    parts.append("BN %d" % hist.get("BatchNormalization", 0))
    if conv_act + conv_plain:
        s = "Conv %d (%d with act" % (conv_act + conv_plain, conv_act)
        if plain_then_act:
            s += ", %d followed by an unfused act" % plain_then_act
        parts.append(s + ")")
    for op in ("Attention", "LayerNormalization", "Gelu"):
        k = sum(1 for n in g.node if n.op_type == op and n.domain in ("", "ai.onnx"))
        if k:
            parts.append("%s %d" % (op, k))
    acts = {}
    for n in g.node:
        for a in n.attribute:
            if n.domain == "kiln" and a.name == "activation" and a.s:
                acts[a.s.decode()] = acts.get(a.s.decode(), 0) + 1
    if acts:
        parts.append("fused activations: " + " ".join("%s %d" % kv for kv in sorted(acts.items())))
    kiln_ops = sorted((n.op_type for n in g.node if n.domain == "kiln"))
    if kiln_ops:
        parts.append("kiln: " + " ".join("%s %d" % (o, kiln_ops.count(o)) for o in sorted(set(kiln_ops))))
    print(", ".join(parts))


def maxerr(d, ref):
    import numpy as np
    worst_abs = worst_rel = None
    for e in sorted(glob.glob(os.path.join(ref, "output_*.npy"))):
        a = os.path.join(d, os.path.basename(e))
        if not os.path.exists(a):
            continue
        x, y = np.load(a), np.load(e)
        if x.shape != y.shape or x.dtype.kind != "f":
            continue
        x = x.astype(np.float64)
        y = y.astype(np.float64)
        diff = np.abs(x - y)
        ok = ~np.isnan(diff)
        if not ok.any():
            continue
        worst_abs = max(worst_abs or 0.0, float(diff[ok].max()))
        worst_rel = max(worst_rel or 0.0, float((diff[ok] / (1e-5 + np.abs(y[ok]))).max()))
    if worst_abs is None:
        print("— —")
    else:
        print("%.3g %.3g" % (worst_abs, worst_rel))


if __name__ == "__main__":
    cmd = sys.argv[1]
    {"check": check, "ops": ops, "maxerr": maxerr}[cmd](*sys.argv[2:])
