#!/usr/bin/env python3
"""make_serve_seeds.py: writes the hand-made seeds of the `kiln serve` fuzz targets into
tests/fuzz/corpus/serve_infer/ (files seed_*) and tests/fuzz/corpus/serve_pbtxt/ (seed_*).

serve_infer input: a flag byte (bit 0: the flat-input model without batching, bit 1: a
4-byte little-endian Inference-Header-Content-Length follows), then the request body (see
fuzz_serve_infer.c). serve_pbtxt input: the text of a config.pbtxt.

Usage: python3 tests/fuzz/make_serve_seeds.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def image(batch=1, shape=None, dt="FP32", data=None, name="image", **extra):
    shape = shape if shape is not None else [batch, 1, 8, 8]
    d = {"name": name, "shape": shape, "datatype": dt}
    if data is not None:
        d["data"] = data
    d.update(extra)
    return d


def js(doc):
    return json.dumps(doc, separators=(",", ":")).encode()


def json_seed(doc, flat=False):
    return bytes([1 if flat else 0]) + (doc if isinstance(doc, bytes) else js(doc))


def binary_seed(header, blob, flat=False, header_len=None):
    h = js(header)
    n = len(h) if header_len is None else header_len
    return bytes([2 | (1 if flat else 0)]) + struct.pack("<I", n) + h + blob


def infer_seeds():
    px = [float(i % 7) / 7 for i in range(64)]
    f32 = struct.pack("<64f", *px)
    s = {
        "json_one": json_seed({"id": "a", "inputs": [image(data=px)]}),
        "json_nested": json_seed({"inputs": [image(data=[[[px[i * 8:i * 8 + 8] for i in range(8)]]])]}),
        "json_two": json_seed({"inputs": [image(2, data=px + px)], "outputs": [{"name": "logits"}]}),
        "json_classify": json_seed({"inputs": [image(data=px)],
                                    "outputs": [{"name": "logits", "parameters": {"classification": 3}}]}),
        "json_params": json_seed({"inputs": [image(data=px)], "parameters": {"binary_data_output": True,
                                                                            "timeout": 1000}}),
        "json_flat": json_seed({"inputs": [image(shape=[64], data=px)]}, flat=True),
        "json_bad_dtype": json_seed({"inputs": [image(dt="INT64", data=[1] * 64)]}),
        "json_bad_shape": json_seed({"inputs": [image(shape=[1, 1, 8, 9], data=px)]}),
        "json_big_batch": json_seed({"inputs": [image(17, data=px)]}),
        "json_short_data": json_seed({"inputs": [image(data=px[:10])]}),
        "json_strings": json_seed({"inputs": [image(data=["x"] * 64)]}),
        "json_twice": json_seed({"inputs": [image(data=px), image(data=px)]}),
        "json_unknown": json_seed({"inputs": [image(data=px, name="nope")]}),
        "json_no_inputs": json_seed({"id": "x"}),
        "json_id_number": json_seed({"id": 5, "inputs": [image(data=px)]}),
        "json_bad_output": json_seed({"inputs": [image(data=px)], "outputs": [{"name": "nope"}]}),
        "json_huge_dims": json_seed({"inputs": [image(shape=[1, 1, 1 << 40, 1 << 40], data=px)]}),
        "json_negative": json_seed({"inputs": [image(shape=[-1, 1, 8, 8], data=px)]}),
        "json_deep": json_seed(b'{"inputs":[{"name":"image","shape":[1,1,8,8],"datatype":"FP32","data":' +
                               b"[" * 40 + b"1" + b"]" * 40 + b"}]}"),
        "json_malformed": json_seed(b'{"inputs":[{"name":"image",'),
        "json_dup_key": json_seed(b'{"inputs":[],"inputs":[]}'),
        "json_nan": json_seed(b'{"inputs":[{"name":"image","shape":[1,1,8,8],"datatype":"FP32","data":[1e999]}]}'),
        "bin_one": binary_seed({"inputs": [image(parameters={"binary_data_size": 256})]}, f32),
        "bin_flat": binary_seed({"inputs": [image(shape=[64], parameters={"binary_data_size": 256})]}, f32, True),
        "bin_short": binary_seed({"inputs": [image(parameters={"binary_data_size": 256})]}, f32[:100]),
        "bin_extra": binary_seed({"inputs": [image(parameters={"binary_data_size": 256})]}, f32 + b"xx"),
        "bin_size_mismatch": binary_seed({"inputs": [image(parameters={"binary_data_size": 252})]}, f32[:252]),
        "bin_both": binary_seed({"inputs": [image(data=px, parameters={"binary_data_size": 256})]}, f32),
        "bin_header_past_end": binary_seed({"inputs": [image(parameters={"binary_data_size": 256})]}, f32,
                                           header_len=1 << 30),
        "bin_header_zero": binary_seed({"inputs": []}, b"", header_len=0),
        "bin_two": binary_seed({"inputs": [image(2, parameters={"binary_data_size": 512})],
                                "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}, f32 + f32),
    }
    return s


PBTXT = {
    "triton": b'''name: "fuzz"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [ { name: "image" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" } ]
dynamic_batching { preferred_batch_size: [ 8, 16 ] max_queue_delay_microseconds: 50000 }
instance_group [ { count: 2 kind: KIND_CPU } ]
response_cache { enable: true }   # ignored
''',
    "queue": b'''max_batch_size: 16
dynamic_batching {
  max_queue_delay_microseconds: 1500000
  default_queue_policy { max_queue_size: 2 timeout_action: REJECT default_timeout_microseconds: 100
                         allow_timeout_override: true }
}
''',
    "versions": b'version_policy: { all { } }\nmax_batch_size: 8\n',
    "versions_latest": b'version_policy { latest { num_versions: 2 } }\n',
    "versions_specific": b'version_policy { specific { versions: [1, 3] } }\n',
    "reshape": b'''max_batch_size: 4
input { name: "image" data_type: TYPE_FP32 dims: [ 64 ] reshape: { shape: [ 1, 8, 8 ] } }
''',
    "no_batch": b'max_batch_size: 0\ninput { name: "image" data_type: TYPE_FP32 dims: [ 1, 1, 8, 8 ] }\n',
    "engine": b'platform: "kiln"\nmax_batch_size: 16\ndefault_model_filename: "cnn.onnx"\n',
    "parameters": b'parameters { key: "threads" value: { string_value: "2" } }\n'
                  b'parameters: [ { key: "x", value: < string_value: \'a\\x41\\101\\n\' > } ]\n',
    "strings": b'name: "a" "b" \'c\'; backend: "kiln",\n',
    "bad_type": b'input [ { name: "image" data_type: TYPE_INT8 dims: [ 1, 8, 8 ] } ]\n',
    "bad_dims": b'max_batch_size: 2\ninput [ { name: "image" data_type: TYPE_FP32 dims: [ 1, 8, 9 ] } ]\n',
    "bad_name": b'name: "other"\n',
    "bad_number": b'max_batch_size: eight\n',
    "bad_big": b'max_batch_size: 99999999999999999999999\n',
    "bad_preferred": b'max_batch_size: 4\ndynamic_batching { preferred_batch_size: [ 8 ] }\n',
    "bad_unclosed": b'input [ { name: "image" ',
    "bad_escape": b'name: "\\x\\777\\',
    "deep": b"a {" * 40 + b"}" * 40,
    "empty": b"",
    "comment": b"# only a comment\n",
}


def write_all(folder, seeds):
    os.makedirs(folder, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(folder, "seed_" + name), "wb") as f:
            f.write(data)


def main():
    write_all(os.path.join(HERE, "corpus", "serve_infer"), infer_seeds())
    write_all(os.path.join(HERE, "corpus", "serve_pbtxt"), PBTXT)


if __name__ == "__main__":
    main()
