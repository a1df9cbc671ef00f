"""Threads: eight Python threads sharing one session get the results a single thread gets,
and run() releases the GIL (another thread executes Python code while a run is inside
kiln)."""
import threading
import time

import numpy as np
from conftest import make_model

import kiln


def test_eight_threads_share_one_session(demo):
    model, images, want = demo
    sess = kiln.InferenceSession(model)
    rng = np.random.default_rng(7)
    # A different batch per thread (images permuted and scaled), its reference computed alone.
    feeds = [np.ascontiguousarray(images[rng.permutation(16)] * (1 + 0.1 * t)) for t in range(8)]
    refs = [sess.run(None, {"image": f}) for f in feeds]
    errors = []
    barrier = threading.Barrier(8)

    def worker(t):
        try:
            barrier.wait()
            for _ in range(40):
                logits, label = sess.run(None, {"image": feeds[t]})
                np.testing.assert_array_equal(logits, refs[t][0])
                np.testing.assert_array_equal(label, refs[t][1])
        except Exception as e:  # reported below, with the thread
            errors.append((t, repr(e)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    np.testing.assert_allclose(refs[0][0], sess.run(["logits"], {"image": feeds[0]})[0], rtol=0, atol=0)
    np.testing.assert_allclose(sess.run(["logits"], {"image": images})[0], want, rtol=0, atol=1e-4)


def test_eight_threads_on_a_prepacked_matmul():
    """A fixed-shape MatMul with constant weights runs on oneDNN's prepacked matmul; eight
    threads with different inputs each get their own results (kiln once shared the
    primitive's scratchpad between threads)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w = rng.uniform(-1, 1, (128, 128)).astype(np.float32)
    m = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 128])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 128])],
                   initializers=[numpy_helper.from_array(w, "w")])
    so = kiln.SessionOptions()
    so.intra_op_num_threads = 1
    sess = kiln.InferenceSession(m, so)
    feeds = [rng.uniform(-1, 1, (16, 128)).astype(np.float32) for _ in range(8)]
    refs = [sess.run(None, {"x": f})[0] for f in feeds]
    for f, r in zip(feeds, refs):  # float64 reference, tolerance 1e-4 relative to the row norms
        np.testing.assert_allclose(r, f.astype(np.float64) @ w, rtol=1e-4, atol=1e-4)
    errors = []
    barrier = threading.Barrier(8)

    def worker(t):
        barrier.wait()
        for _ in range(200):
            y = sess.run(None, {"x": feeds[t]})[0]
            if not np.array_equal(y, refs[t]):
                errors.append(t)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, f"{len(errors)} of 1600 runs differ from the single-threaded result"


def slow_model(n=48, size=512):
    """n chained 512x512 MatMuls: about 13 GFLOP, 0.1 to 1 s on one thread."""
    from onnx import TensorProto, helper, numpy_helper

    w = (np.eye(size, dtype=np.float32) * 0.5 + 0.01).astype(np.float32)
    nodes = []
    prev = "x"
    for i in range(n):
        out = "y" if i == n - 1 else f"t{i}"
        nodes.append(helper.make_node("MatMul", [prev, "w"], [out]))
        prev = out
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", size])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", size])],
                      initializers=[numpy_helper.from_array(w, "w")])


def test_run_releases_the_gil():
    so = kiln.SessionOptions()
    so.intra_op_num_threads = 1
    sess = kiln.InferenceSession(slow_model(), so)
    x = np.ones((512, 512), np.float32)
    t = time.perf_counter()
    sess.run(None, {"x": x})
    took = time.perf_counter() - t
    assert took > 0.02, f"the model is too fast to tell ({took * 1e3:.1f} ms)"

    window = {}
    done = threading.Event()

    def runner():
        window["start"] = time.perf_counter()
        sess.run(None, {"x": x})
        window["end"] = time.perf_counter()
        done.set()

    stamps = []
    th = threading.Thread(target=runner)
    th.start()
    while not done.is_set():  # pure Python work on this thread while the other runs
        stamps.append(time.perf_counter())
    th.join()
    start, end = window["start"], window["end"]
    span = end - start
    # With the GIL held for the whole run, this thread could only run in the first and the
    # last few milliseconds of the window (the interpreter's switch interval is 5 ms); in the
    # middle 40% it would record nothing.
    middle = [s for s in stamps if start + 0.3 * span < s < end - 0.3 * span]
    assert span > 0.02
    assert middle, f"no Python ran during the middle of a {span * 1e3:.0f} ms run: the GIL was held"


def test_two_runs_overlap_in_time():
    """Two threads inside run() at once: each run records, from inside its own thread, that
    the other thread advanced while it was running."""
    so = kiln.SessionOptions()
    so.intra_op_num_threads = 1
    sess = kiln.InferenceSession(slow_model(24), so)
    x = np.ones((512, 512), np.float32)
    sess.run(None, {"x": x})
    progress = [0, 0]
    seen = [[], []]
    barrier = threading.Barrier(2)

    def worker(i):
        barrier.wait()
        for _ in range(4):
            before = progress[1 - i]
            sess.run(None, {"x": x})
            seen[i].append(progress[1 - i] - before)
            progress[i] += 1

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    # If runs excluded each other (GIL held), a run of thread i could see thread 1-i finish at
    # most one run; with both inside kiln at once, the other finishes runs concurrently and
    # each thread still completes its 4 runs. The decisive check is the GIL test above; here
    # we check that both threads made progress while the other was running.
    assert progress == [4, 4]
    assert sum(seen[0]) + sum(seen[1]) >= 2, seen
