#!/bin/sh
# bench/check_python.sh: does `import kiln as onnxruntime` run the model set correctly? Runs
# every model of build/bench-models (bench/make_models.py) that has ONNX Runtime references
# (NAME/ort, bench/make_refs.sh) through the Python module, written as an onnxruntime script
# would be (InferenceSession with default options, i.e. ORT_ENABLE_ALL, get_inputs, run with
# a feed dict), and compares every output with ONNX Runtime's at the tolerance of
# bench/check_models.sh (|kiln - ort| <= 1e-4 + 1e-3 |ort|, NaN equal to NaN).
#
#   bench/check_python.sh [--build DIR] [--models DIR] [MODEL.onnx...]
#
# DIR defaults to build/release (its python/ folder holds the module); the models to
# build/bench-models of this checkout. Prints a Markdown table, one row per model; exits 1 if
# any model fails or differs. Not part of CI: the models take minutes to generate.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/release
models_dir=$root/build/bench-models
while [ $# -gt 0 ]; do
    case $1 in
        --build) build=$2; shift 2 ;;
        --models) models_dir=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
        -*) echo "check_python.sh: unknown option '$1'" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ -d "$build/python/kiln" ] || { echo "check_python.sh: no Python module in $build/python (build kiln_python)" >&2; exit 1; }
PYTHONPATH=$build/python exec /usr/bin/python3 - "$models_dir" "$@" <<'PY'
import glob
import os
import sys
import time

import numpy as np

import kiln as onnxruntime

RTOL, ATOL = 1e-3, 1e-4
models = sys.argv[2:] or sorted(m for m in glob.glob(os.path.join(sys.argv[1], "*.onnx"))
                                if os.path.isdir(m[:-5] + "/ort"))
if not models:
    sys.exit(f"check_python.sh: no model with references in {sys.argv[1]}")
print(f"kiln {onnxruntime.__version__} ({onnxruntime.cpu_isa()}), import kiln as onnxruntime; "
      f"references: ONNX Runtime; |kiln - ort| <= {ATOL} + {RTOL} |ort|")
print()
print("| model | result | outputs equal | max abs error | session s | run s | note |")
print("|---|---|---:|---:|---:|---:|---|")
status = 0
for m in models:
    name = os.path.basename(m)[:-5]
    ref = m[:-5]
    listing = open(os.path.join(ref, "ort", "listing.txt")).read().splitlines()
    feeds = {}
    outs = []
    for line in listing:
        kind, _, rest = line.partition(" ")
        if kind == "input":
            n, _, f = rest.partition("=")
            feeds[n] = np.load(os.path.join(ref, f))
        elif kind == "output":
            k, _, oname = rest.split(" ", 2)
            outs.append((int(k), oname))
    try:
        t0 = time.perf_counter()
        sess = onnxruntime.InferenceSession(m, providers=["CPUExecutionProvider"])
        t1 = time.perf_counter()
        feed = {i.name: feeds[i.name] for i in sess.get_inputs()}
        got = sess.run([o for _, o in outs], feed)
        t2 = time.perf_counter()
    except onnxruntime.KilnError as e:
        status = 1
        print(f"| {name} | fails | | | | | {str(e)[:200].replace('|', '/')} |")
        continue
    eq, worst, note = 0, 0.0, ""
    for (k, oname), g in zip(outs, got):
        w = np.load(os.path.join(ref, "ort", f"output_{k}.npy"))
        ok = g.shape == w.shape and g.dtype == w.dtype
        if ok and w.dtype.kind in "fc":
            gg, ww = g.astype(np.float64), w.astype(np.float64)
            both_nan = np.isnan(gg) & np.isnan(ww)
            d = np.where(both_nan, 0, np.abs(gg - ww))
            ok = bool(np.all(d <= ATOL + RTOL * np.abs(np.where(both_nan, 0, ww))))
            if d.size:
                worst = max(worst, float(np.nanmax(d)))
        elif ok:
            ok = np.array_equal(g, w)
        if ok:
            eq += 1
        elif not note:
            note = f"{oname}: got {g.dtype}{list(g.shape)}, max abs error " + \
                   (f"{float(np.nanmax(np.abs(g.astype(np.float64) - w.astype(np.float64)))):.3g}"
                    if g.shape == w.shape else "shape differs")
    if eq != len(outs):
        status = 1
    print(f"| {name} | {'pass' if eq == len(outs) else 'differs'} | {eq}/{len(outs)} | {worst:.3g} | "
          f"{t1 - t0:.1f} | {t2 - t1:.2f} | {note} |")
sys.exit(status)
PY
