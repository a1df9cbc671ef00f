"""Reference counts and memory: 10000 runs (and 2000 failing ones) leave the resident set
size flat (growth under 4 MiB, where one leaked output per run would be ~10 MiB) and leave
no Python allocations behind (tracemalloc: under 64 KiB); the feed's refcounts are
unchanged."""
import gc
import sys
import tracemalloc

import numpy as np
from conftest import NODE, rss_kib

import kiln


def test_no_leak_in_10000_runs(demo):
    model, images, want = demo
    sess = kiln.InferenceSession(model)
    x = images[:4].copy()
    feed = {"image": x}
    strings = kiln.InferenceSession(str(NODE / "test_string_concat" / "model.onnx"))
    sfeed = {"x": np.array(["abc", "de"], dtype=object), "y": np.array(["f", "gh"], dtype=object)}
    seq = kiln.InferenceSession(str(NODE / "test_sequence_insert_at_back" / "model.onnx"))
    kinds = [i.type for i in seq.get_inputs()]
    assert kinds == ["seq(tensor(int64))", "tensor(int64)"], kinds
    qfeed = {seq.get_inputs()[0].name: [np.ones((2, 3), np.int64), np.zeros((1, 3), np.int64)],
             seq.get_inputs()[1].name: np.full(3, 2, np.int64)}

    def loop(n):
        for _ in range(n):
            sess.run(None, feed)
            sess.run(["logits"], feed)
        for _ in range(n // 10):
            strings.run(None, sfeed)
            seq.run(None, qfeed)
            try:
                sess.run(None, {"image": x[:, :, :, :3]})
            except kiln.InvalidArgument:
                pass
            try:
                sess.run(None, {"imagex": x})
            except kiln.InvalidArgument:
                pass

    refs = (sys.getrefcount(x), sys.getrefcount(feed))
    loop(1000)  # warm up: arenas, caches, first-run planning
    gc.collect()
    before = rss_kib()
    loop(5000)  # 10000 successful runs of the demo model, 1000 string and sequence runs, 1000 failing
    gc.collect()
    after = rss_kib()
    assert after - before < 4096, f"RSS grew by {after - before} KiB over 10000 runs"
    tracemalloc.start()  # slows Python down: a shorter loop
    before_py = tracemalloc.get_traced_memory()[0]
    loop(500)
    gc.collect()
    after_py = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert after_py - before_py < 16384, f"Python allocations grew by {after_py - before_py} bytes"
    assert (sys.getrefcount(x), sys.getrefcount(feed)) == refs


def test_outputs_keep_their_memory_and_free_it(demo):
    """Outputs view kiln's memory (no copy); it lives as long as the array does."""
    model, images, want = demo
    sess = kiln.InferenceSession(model)
    logits = sess.run(["logits"], {"image": images})[0]
    assert not logits.flags.owndata and logits.base is not None
    view = logits[3:5]
    del logits
    gc.collect()
    sess.run(None, {"image": images * 2})  # may reuse freed memory; the view must not change
    np.testing.assert_allclose(view, want[3:5], rtol=0, atol=1e-4)
    sess.run(None, {"image": np.ones((1024, 1, 8, 8), np.float32)})  # plans the arena for the shape
    before = rss_kib()
    for _ in range(50):
        big = sess.run(None, {"image": np.ones((1024, 1, 8, 8), np.float32)})
        del big
    assert rss_kib() - before < 16384
