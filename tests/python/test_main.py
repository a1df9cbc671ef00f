"""python3 -m kiln mirrors `kiln run`: same printout, same files, exit status 1 with
"kiln: <message>" on failure, 2 on a usage error."""
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import DEMO, NODE
from onnx import numpy_helper


def pykiln(*args):
    return subprocess.run([sys.executable, "-m", "kiln", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_prints_like_kiln_run():
    p = pykiln(DEMO / "digits_cnn.onnx", "--input", f"image={DEMO / 'test_images.npy'}", "--threads", "1")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "logits: float32[16,10]"
    assert lines[1].startswith("  values: ") and lines[1].endswith("... (160 elements)")
    assert lines[2].startswith("  min ") and "  max " in lines[2] and "  mean " in lines[2]
    assert lines[3] == "label: int64[16]"
    want = np.load(DEMO / "test_logits.npy").argmax(axis=1)
    assert lines[4] == "  values: " + " ".join(str(x) for x in want)
    kiln_bin = os.path.join(os.environ.get("KILN_BINARY_DIR", ""), "kiln")
    if os.path.exists(kiln_bin):  # the same text as the CLI (ctest sets KILN_BINARY_DIR)
        c = subprocess.run([kiln_bin, "run", str(DEMO / "digits_cnn.onnx"), "--input",
                            f"image={DEMO / 'test_images.npy'}", "--threads", "1"], capture_output=True, text=True)
        assert c.stdout == p.stdout


@pytest.mark.parametrize("fmt", ["pb", "npy"])
def test_output_dir(tmp_path, fmt):
    d = NODE / "test_add"
    p = pykiln(d / "model.onnx", "--input-dir", d / "test_data_set_0", "--output-dir", tmp_path, "--format", fmt,
               "--level", "extended")
    assert p.returncode == 0, p.stderr
    t = onnx.TensorProto()
    t.ParseFromString(open(d / "test_data_set_0" / "output_0.pb", "rb").read())
    want = numpy_helper.to_array(t)
    if fmt == "npy":
        got = np.load(tmp_path / "output_0.npy")
    else:
        g = onnx.TensorProto()
        g.ParseFromString(open(tmp_path / "output_0.pb", "rb").read())
        got = numpy_helper.to_array(g)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


def test_sequences_and_print_all(tmp_path):
    d = NODE / "test_sequence_insert_at_back"
    p = pykiln(d / "model.onnx", "--input-dir", d / "test_data_set_0", "--print-all")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "output_sequence: seq(int64) of 4 items"


def test_errors():
    p = pykiln(DEMO / "missing.onnx")
    assert p.returncode == 1 and p.stderr.startswith("kiln: ") and "missing.onnx" in p.stderr
    p = pykiln(DEMO / "digits_cnn.onnx")
    assert p.returncode == 1 and "no value for input 'image'" in p.stderr
    p = pykiln(DEMO / "digits_cnn.onnx", "--input", f"img={DEMO / 'test_images.npy'}")
    assert p.returncode == 1 and "no input named 'img'" in p.stderr
    p = pykiln(DEMO / "digits_cnn.onnx", "--input", "image")
    assert p.returncode == 2
    p = pykiln(DEMO / "digits_cnn.onnx", "--input", f"image={DEMO / 'test_labels.txt'}")
    assert p.returncode == 1 and p.stderr.startswith("kiln: ")
