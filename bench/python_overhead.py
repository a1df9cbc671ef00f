#!/usr/bin/env python3
"""bench/python_overhead.py: what calling kiln through Python adds per run.

For each small model, in alternating rounds on one session:
  C        the extension's C loop over kiln_session_run (Session.bench: the feed converted
           once, outputs freed outside the clock; what a C program calling kiln.h measures)
  Python   session.run(None, feed) timed from Python (time.perf_counter around the call):
           dict lookup, zero-copy wrapping of the NumPy inputs, the GIL released and
           re-taken, outputs wrapped as arrays
The overhead is the difference of the medians (median over rounds of each round's median).
Runs at 1 thread. Also prints `kiln bench`'s median when the CLI is found (--kiln).

    PYTHONPATH=build/release/python python3 bench/python_overhead.py [--rounds 7] [--runs 3000]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import kiln

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def models(onnx_tests):
    node = os.path.join(onnx_tests, "node")
    yield ("test_add (2 inputs 3x4x5, 1 output)", os.path.join(node, "test_add", "model.onnx"),
           {"x": np.ones((3, 4, 5), np.float32), "y": np.ones((3, 4, 5), np.float32)})
    yield ("test_relu (3x4x5)", os.path.join(node, "test_relu", "model.onnx"),
           {"x": np.ones((3, 4, 5), np.float32)})
    images = np.load(os.path.join(ROOT, "demo", "test_images.npy"))
    yield ("digits_cnn batch 1 (2 outputs)", os.path.join(ROOT, "demo", "digits_cnn.onnx"),
           {"image": images[:1].copy()})


def measure(sess, feed, rounds, runs):
    c_med, py_med = [], []
    for _ in range(rounds):
        c_med.append(statistics.median(sess._sess.bench(feed, runs, 100)))
        for _ in range(100):
            sess.run(None, feed)
        t = []
        run = sess.run
        for _ in range(runs):
            t0 = time.perf_counter()
            run(None, feed)
            t.append(time.perf_counter() - t0)
        py_med.append(statistics.median(t) * 1e3)
    return statistics.median(c_med), statistics.median(py_med)


def kiln_bench(kiln_bin, model, feed, tmp):
    args = [kiln_bin, "bench", model, "--threads", "1", "--json", "--iterations", "3000", "--warmup", "100"]
    for name, a in feed.items():
        p = os.path.join(tmp, f"{name}.npy")
        np.save(p, a)
        args += ["--input", f"{name}={p}"]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["latency_ms"]["median"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=3000)
    ap.add_argument("--onnx-tests", default=os.environ.get("KILN_ONNX_TESTS",
                                                           os.path.join(ROOT, "..", "shared", "onnx-tests")))
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build", "release", "kiln"))
    a = ap.parse_args()
    import tempfile
    tmp = tempfile.mkdtemp()
    print(f"kiln {kiln.__version__}, {kiln.cpu_isa()}, 1 thread, {a.rounds} rounds x {a.runs} runs")
    print()
    print("| model | C API median µs | Python run() median µs | overhead µs | `kiln bench` median µs |")
    print("|---|---:|---:|---:|---:|")
    worst = 0.0
    for name, path, feed in models(a.onnx_tests):
        so = kiln.SessionOptions()
        so.intra_op_num_threads = 1
        sess = kiln.InferenceSession(path, so)
        c, py = measure(sess, feed, a.rounds, a.runs)
        kb = kiln_bench(a.kiln, path, feed, tmp) if os.path.exists(a.kiln) else None
        worst = max(worst, (py - c) * 1e3)
        print(f"| {name} | {c * 1e3:.1f} | {py * 1e3:.1f} | {(py - c) * 1e3:.1f} | "
              f"{'—' if kb is None else f'{kb * 1e3:.1f}'} |")
    print()
    print(f"largest overhead: {worst:.1f} µs per run")
    return 0 if worst < 20 else 1


if __name__ == "__main__":
    sys.exit(main())
