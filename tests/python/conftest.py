"""Shared paths and helpers of the kiln Python tests (tests/python; docs/python.md).

Run by ctest's python_tests (PYTHONPATH=<build>/python python3 -m pytest tests/python), or
by hand the same way. KILN_ONNX_TESTS points at the ONNX backend test data
(default: ../shared/onnx-tests next to the checkout)."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo"
ONNX_TESTS = pathlib.Path(os.environ.get("KILN_ONNX_TESTS") or ROOT.parent / "shared" / "onnx-tests")
NODE = ONNX_TESTS / "node"


def rss_kib():
    """The process's resident set size now, in KiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_model(nodes, inputs, outputs, opset=17, initializers=()):
    """A small ONNX model's bytes, from onnx.helper parts."""
    from onnx import helper

    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    m = helper.make_model(g, producer_name="kiln-tests", opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m.SerializeToString()


@pytest.fixture(scope="session")
def demo():
    """(model path, images, reference logits) of demo/ (scripts/demo.sh)."""
    return (str(DEMO / "digits_cnn.onnx"), np.load(DEMO / "test_images.npy"),
            np.load(DEMO / "test_logits.npy"))


@pytest.fixture(scope="session")
def node_tests():
    if not NODE.is_dir():
        pytest.fail(f"no ONNX backend test data at {NODE} (set KILN_ONNX_TESTS)")
    return NODE


def run_python(code, *args, env_extra=None, timeout=300):
    """Runs `python3 -c code` with this interpreter and PYTHONPATH; returns the process."""
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
