"""Calling through Python adds under 20 µs per run over the C API (bench/python_overhead.py
gives the figures of docs/benchmarks.md): medians over rounds of a tiny model, the C side
being the extension's loop over kiln_session_run."""
import statistics
import time

import numpy as np
from conftest import NODE

import kiln


def test_python_overhead_under_20us():
    so = kiln.SessionOptions()
    so.intra_op_num_threads = 1
    sess = kiln.InferenceSession(str(NODE / "test_add" / "model.onnx"), so)
    feed = {"x": np.ones((3, 4, 5), np.float32), "y": np.ones((3, 4, 5), np.float32)}
    c_med, py_med = [], []
    for _ in range(5):
        c_med.append(statistics.median(sess._sess.bench(feed, 2000, 100)) * 1e3)
        t = []
        for _ in range(2000):
            t0 = time.perf_counter()
            sess.run(None, feed)
            t.append(time.perf_counter() - t0)
        py_med.append(statistics.median(t) * 1e6)
    overhead = statistics.median(py_med) - statistics.median(c_med)
    assert overhead < 20, f"Python adds {overhead:.1f} µs per run (C {c_med}, Python {py_med})"
