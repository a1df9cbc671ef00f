"""serve_client.py: end-to-end test of `kiln serve` (docs/serve.md) with a standard-library
KServe v2 client (urllib/http.client, json, struct; no tritonclient).

Run by test_serve.sh as: python3 serve_client.py KILN SOURCE_DIR ONNX_TEST_DATA_DIR.
Builds a model repository in a temporary folder (the digits demo model under several
configs, ONNX node-test models), starts `kiln serve` on free ports (--http-port 0; the
server prints the ports it bound), and checks health, metadata, configuration, JSON and
binary inference against reference outputs, dynamic batching (through /metrics), queue
limits and timeouts, explicit load/unload, a list of bad requests (each a 4xx with a
message, the server staying up), that SIGTERM drains an in-flight request and exits 0, and
that under concurrent load every request (each with a unique KServe "id") is answered
exactly once with its own output, across an unload/load of the model and across SIGTERM.
"""
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

KILN, SRC, ONNX = sys.argv[1], sys.argv[2], sys.argv[3]
POLL = "--poll" in sys.argv[4:]  # test_serve_poll.sh: only the poll mode test
NODE = os.path.join(ONNX, "node")
FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def read_npy(path):
    """A float32 little-endian C-order .npy file: (shape, list of floats)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY"
    hlen = struct.unpack("<H", data[8:10])[0]
    header = data[10:10 + hlen].decode()
    assert "'<f4'" in header and "False" in header
    shape = tuple(int(x) for x in header.split("(")[1].split(")")[0].split(",") if x.strip())
    n = 1
    for d in shape:
        n *= d
    return shape, list(struct.unpack("<%df" % n, data[10 + hlen:10 + hlen + 4 * n]))


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def close(a, b, rtol=1e-4, atol=1e-5):
    """The tolerance of tests/cli/test_demo.sh: float32 rounding of a different summation order."""
    return len(a) == len(b) and all(abs(x - y) <= atol + rtol * abs(y) for x, y in zip(a, b))


class Server:
    def __init__(self, repo, *args):
        self.out = tempfile.TemporaryFile()
        self.err = open(os.path.join(repo, "..", "server-%d.log" % random.randrange(1 << 30)), "w+b")
        self.proc = subprocess.Popen([KILN, "serve", "--model-repository", repo, "--http-port", "0", "--grpc-port", "0",
                                      "--metrics-port", "0", "--http-address", "127.0.0.1"] + list(args),
                                     stdout=subprocess.PIPE, stderr=self.err)
        self.port = self.metrics_port = None
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            if "HTTP on" in line:
                self.port = int(line.rsplit(":", 1)[1])
            elif "metrics on" in line:
                self.metrics_port = int(line.rsplit(":", 1)[1].split("/")[0])
            elif line.startswith("kiln serve: ready"):
                break
        if not self.port:
            self.err.seek(0)
            raise SystemExit("kiln serve did not start: " + self.err.read().decode())

    def request(self, method, path, body=None, headers=None, port=None):
        """(status, headers, body bytes)."""
        c = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def json(self, method, path, doc=None):
        body = json.dumps(doc).encode() if doc is not None else None
        st, _, data = self.request(method, path, body)
        try:
            return st, json.loads(data) if data else None
        except ValueError:
            return st, data

    def metrics(self):
        st, _, data = self.request("GET", "/metrics", port=self.metrics_port)
        values = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                key, v = line.rsplit(" ", 1)
                values[key] = float(v)
        return values

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        self.err.seek(0)
        log = self.err.read().decode()
        at = max(log.find("Sanitizer"), log.find("runtime error"))
        check(at < 0, "no sanitizer report: %s" % log[max(0, at - 200):at + 6000])
        return rc, log


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def add_model(repo, name, onnx, config=None, versions=(1,)):
    for v in versions:
        os.makedirs(os.path.join(repo, name, str(v)))
        shutil.copy(onnx, os.path.join(repo, name, str(v), "model.onnx"))
    if config is not None:
        write(os.path.join(repo, name, "config.pbtxt"), config)


def make_repo(root):
    repo = os.path.join(root, "repo")
    digits = os.path.join(SRC, "demo", "digits_cnn.onnx")
    add_model(repo, "digits", digits, """
name: "digits"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [ { name: "image" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] } ]
dynamic_batching { preferred_batch_size: [ 8, 16 ] max_queue_delay_microseconds: 50000 }
instance_group [ { count: 2 kind: KIND_CPU } ]
response_cache { enable: true }   # a Triton field kiln does not use: reported, ignored
""")
    add_model(repo, "digits_auto", digits)  # no config: auto-complete, max_batch_size 4
    add_model(repo, "digits_queue", digits, """
max_batch_size: 16
dynamic_batching {
  max_queue_delay_microseconds: 1500000
  default_queue_policy { max_queue_size: 2 }
}
""")
    add_model(repo, "digits_timeout", digits, """
max_batch_size: 16
dynamic_batching {
  max_queue_delay_microseconds: 400000
  default_queue_policy { timeout_action: REJECT allow_timeout_override: true }
}
""")
    add_model(repo, "digits_v", digits, 'version_policy: { all { } }\nmax_batch_size: 8\n', versions=(1, 2))
    add_model(repo, "digits_flat", digits, """
max_batch_size: 4
input { name: "image" data_type: TYPE_FP32 dims: [ 64 ] reshape: { shape: [ 1, 8, 8 ] } }
""")
    add_model(repo, "add", os.path.join(NODE, "test_add", "model.onnx"))
    add_model(repo, "strings", os.path.join(NODE, "test_equal_string", "model.onnx"))
    add_model(repo, "labels", os.path.join(NODE, "test_ai_onnx_ml_label_encoder_string_int", "model.onnx"))
    add_model(repo, "digits_labels", digits, """
max_batch_size: 16
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "digits.txt" },
         { name: "label" data_type: TYPE_INT64 dims: [ ] } ]
""")
    write(os.path.join(repo, "digits_labels", "digits.txt"),
          "zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\r\nnine\n")
    for case in NODE_CASES:
        add_model(repo, "node_" + case, os.path.join(NODE, case, "model.onnx"))
    # An engine file (kiln build) under platform kiln, and a model.onnx folder with external data.
    os.makedirs(os.path.join(repo, "digits_engine", "1"))
    subprocess.run([KILN, "build", digits, "-o", os.path.join(repo, "digits_engine", "1", "model.kiln")],
                   check=True, stdout=subprocess.DEVNULL)
    write(os.path.join(repo, "digits_engine", "config.pbtxt"), 'platform: "kiln"\nmax_batch_size: 16\n')
    os.makedirs(os.path.join(repo, "digits_external", "1", "model.onnx"))
    subprocess.run([KILN, "convert", digits, "-o", os.path.join(repo, "digits_external", "1", "model.onnx",
                                                                "model.onnx"), "--external-data", "1024"],
                   check=True, stdout=subprocess.DEVNULL)
    os.makedirs(os.path.join(repo, "digits_named", "7"))
    shutil.copy(digits, os.path.join(repo, "digits_named", "7", "cnn.onnx"))
    write(os.path.join(repo, "digits_named", "config.pbtxt"), 'default_model_filename: "cnn.onnx"\n')
    os.makedirs(os.path.join(repo, "broken", "1"))
    with open(os.path.join(repo, "broken", "1", "model.onnx"), "wb") as f:
        f.write(b"this is not an onnx model")
    make_scheduling_models(repo)
    return repo


# ---- priority levels and preserve_ordering (Triton's dynamic_batching fields)

def onnx_model(path, op, dims, repeat=1):
    """Y = Relu(X), X and Y float32 of the given dims (str: dim_param), or for MatMul
    Y = ReduceMax(X^(2^repeat), axes 1, 2), X squared `repeat` times, Y [dims[0], 1, 1]; written
    with tests/data/make_bad_models.py's protobuf helpers."""
    sys.path.insert(0, os.path.join(SRC, "tests", "data"))
    import make_bad_models as mk  # noqa: E402 (standard library only)
    ydims = dims
    if op == "Relu":
        nodes = [mk.node("Relu", ["X"], ["Y"], "n")]
    else:
        names = ["X"] + ["t%d" % i for i in range(1, repeat + 1)]
        nodes = [mk.node(op, [names[i], names[i]], [names[i + 1]], "n%d" % i) for i in range(repeat)]
        nodes.append(mk.node_attrs("ReduceMax", [names[-1]], ["Y"], "max", [mk.attr_ints("axes", [1, 2])]))
        ydims = [dims[0], 1, 1]
    g = mk.graph("g", nodes, [mk.value_info("X", mk.FLOAT, dims)], [mk.value_info("Y", mk.FLOAT, ydims)])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(mk.model(g))


def make_scheduling_models(repo):
    # Relu on [N, M]: requests of other M cannot share a batch, so the queue's order shows in
    # which runs first. Level 2 (the default) holds two queued requests at most; level 1 any.
    onnx_model(os.path.join(repo, "prio", "1", "model.onnx"), "Relu", ["N", "M"])
    write(os.path.join(repo, "prio", "config.pbtxt"), """
max_batch_size: 8
dynamic_batching {
  max_queue_delay_microseconds: 700000
  priority_levels: 2
  default_priority_level: 2
  default_queue_policy { max_queue_size: 2 }
  priority_queue_policy { key: 1 value: { max_queue_size: 0 } }
}
""")
    # Timeout action DELAY: a request whose 100 ms timeout passes while it waits for a batch
    # moves behind the requests of its level that have not timed out.
    onnx_model(os.path.join(repo, "delay", "1", "model.onnx"), "Relu", ["N", "M"])
    write(os.path.join(repo, "delay", "config.pbtxt"), """
max_batch_size: 8
dynamic_batching {
  max_queue_delay_microseconds: 600000
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 100000 }
}
""")
    # X squared 160 times, X [N, M, M]: run time grows as M^3 (M = 450: some 1.5e10 multiply-adds);
    # the output (the max) is one value per row, so answers take no time to write. Two
    # instances, so a small request taken after a big one finishes first; with
    # preserve_ordering its answer waits.
    for name, ordered in (("ordered", "true"), ("unordered", "false")):
        onnx_model(os.path.join(repo, name, "1", "model.onnx"), "MatMul", ["N", "M", "M"], repeat=160)
        write(os.path.join(repo, name, "config.pbtxt"), """
max_batch_size: 4
dynamic_batching { max_queue_delay_microseconds: 0 preserve_ordering: %s }
instance_group [ { count: 2 } ]
""" % ordered)


def timed_infer(srv, model, shape, params, results, key, t0, value=0.5):
    """One request of X = value everywhere (as binary data); results[key] = (status, seconds
    after t0, response with its outputs as JSON)."""
    n = 1
    for d in shape:
        n *= d
    header = {"inputs": [{"name": "X", "shape": shape, "datatype": "FP32",
                          "parameters": {"binary_data_size": 4 * n}}]}
    if params:
        header["parameters"] = params
    body, headers = binary_request(header, [struct.pack("<%df" % n, *([value] * n))])
    st, _, data = srv.request("POST", "/v2/models/%s/infer" % model, body, headers)
    results[key] = (st, time.time() - t0, json.loads(data))


def test_priority(srv):
    """A request of priority level 1 overtakes a queued level 2 one; max_queue_size per level."""
    st, cfg = srv.json("GET", "/v2/models/prio/config")
    db = cfg.get("dynamic_batching", {}) if st == 200 else {}
    check(db.get("priority_levels") == 2 and db.get("default_priority_level") == 2 and
          db.get("priority_queue_policy", {}).get("1", {}).get("max_queue_size") == 0,
          "priority config shown: %s" % db)
    for high, name in ((1, "priority 1"), (2, "same priority (control)")):
        results, t0 = {}, time.time()
        low = threading.Thread(target=timed_infer, args=(srv, "prio", [1, 3], None, results, "low", t0))
        low.start()
        time.sleep(0.15)
        hi = threading.Thread(target=timed_infer, args=(srv, "prio", [1, 5], {"priority": high}, results, "high", t0))
        hi.start()
        low.join()
        hi.join()
        (st_l, t_l, r_l), (st_h, t_h, r_h) = results["low"], results["high"]
        check(st_l == 200 and st_h == 200, "%s: both answered 200: %s %s" % (name, r_l, r_h))
        if high == 1:
            # The level 1 request goes to the head, runs at once (the level 2 one cannot join
            # it); the level 2 one then waits out its queue delay (0.7 s from its arrival).
            check(t_h < t_l and t_h < 0.5 and t_l >= 0.6,
                  "%s: the high one answered first (%.3f s; low %.3f s)" % (name, t_h, t_l))
        else:
            # FIFO: the other shape cannot join the oldest, so the oldest runs as the other
            # arrives; the other, then alone in the queue, waits out its own window (0.7 s
            # from its arrival at 0.15 s).
            check(t_l < 0.5 and t_h >= 0.75, "%s: first come, first served (low %.3f s, high %.3f s)"
                  % (name, t_l, t_h))
    # Level 2 holds two queued requests: a third is refused, a level 1 one is not.
    results, t0 = {}, time.time()
    queued = [threading.Thread(target=timed_infer, args=(srv, "prio", [1, 3], None, results, k, t0))
              for k in ("first", "second")]
    for t in queued:
        t.start()
    wait_pending(srv, "prio", 2)
    st, r = infer_json(srv, "prio", [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
                       params={"priority": 2})
    check(st == 503 and "2 requests queued at priority level 2" in r.get("error", "") and
          "max_queue_size 2" in r.get("error", ""), "level 2 full: %s %s" % (st, r))
    st, r = infer_json(srv, "prio", [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [-1, 2, -3]}],
                       params={"priority": 1})
    check(st == 200 and r["outputs"][0]["data"] == [0, 2, 0], "level 1 still takes requests: %s %s" % (st, r))
    for t in queued:
        t.join()
    check(results["first"][0] == 200 and results["second"][0] == 200, "the queued level 2 requests: %s" % results)
    st, r = infer_json(srv, "prio", [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
                       params={"priority": -1})
    check(st == 400 and "priority" in r.get("error", ""), "a negative priority: %s %s" % (st, r))
    # DELAY: A waits for a batch past its 100 ms timeout and moves behind; B (another shape,
    # so it cannot join A) arrives at 0.2 s and goes first, running at once; A is still
    # answered, when its 0.6 s batch window ends. (First come, first served would run A as B
    # arrives; REJECT would refuse A at 0.1 s.)
    results, t0 = {}, time.time()
    a = threading.Thread(target=timed_infer, args=(srv, "delay", [1, 3], None, results, "a", t0))
    a.start()
    time.sleep(0.2)
    b = threading.Thread(target=timed_infer, args=(srv, "delay", [1, 5], None, results, "b", t0))
    b.start()
    a.join()
    b.join()
    (st_a, t_a, r_a), (st_b, t_b, r_b) = results["a"], results["b"]
    print("DELAY: the delayed request answered at %.3f s, the later one at %.3f s" % (t_a, t_b))
    check(st_a == 200 and st_b == 200 and t_b < t_a and t_b < 0.5 and t_a >= 0.55,
          "DELAY: the later request first (%s at %.3f s), the delayed one still served (%s at %.3f s)"
          % (st_b, t_b, st_a, t_a))


def test_preserve_ordering(srv):
    """Two instances: a big request, then a small one that finishes first. With preserve_ordering
    the small one's answer waits for the big one's; without, it comes back first."""
    for model, ordered in (("ordered", True), ("unordered", False)):
        results, t0 = {}, time.time()
        big = threading.Thread(target=timed_infer, args=(srv, model, [1, 450, 450], None, results, "big", t0, 0.0))
        big.start()
        wait_pending(srv, model, 1)  # the big one is running
        small = threading.Thread(target=timed_infer, args=(srv, model, [1, 2, 2], None, results, "small", t0,
                                                           0.0))
        small.start()
        big.join()
        small.join()
        (st_b, t_b, r_b), (st_s, t_s, r_s) = results["big"], results["small"]
        check(st_b == 200 and st_s == 200, "%s: both answered: %s %s" % (model, st_b, st_s))
        print("%s: big answered at %.3f s, small at %.3f s" % (model, t_b, t_s))
        if st_s == 200:
            check(r_s["outputs"][0]["data"] == [0] and r_s["outputs"][0]["shape"] == [1, 1, 1],
                  "%s: the small one's result: %s" % (model, r_s))
        # The big run takes 0.1 s or more, the small one microseconds; the client's threads see
        # answers that the server sends together up to a few ms apart (Python's GIL), hence
        # the 30 ms margin both ways.
        if ordered:
            check(t_s >= t_b - 0.03, "preserve_ordering: the small answer (%.3f s) after the big one (%.3f s)"
                  % (t_s, t_b))
        else:
            check(t_s < t_b - 0.03, "without preserve_ordering the small answer (%.3f s) comes first (big %.3f s)"
                  % (t_s, t_b))


def infer_json(srv, model, inputs, outputs=None, params=None):
    doc = {"inputs": inputs}
    if outputs is not None:
        doc["outputs"] = outputs
    if params is not None:
        doc["parameters"] = params
    return srv.json("POST", "/v2/models/%s/infer" % model, doc)


def image_rows(images, first, count):
    return images[first * 64:(first + count) * 64]


def binary_request(header, blobs):
    h = json.dumps(header).encode()
    return h + b"".join(blobs), {"Inference-Header-Content-Length": str(len(h)),
                                 "Content-Type": "application/octet-stream"}


def parse_binary_response(headers, body):
    hl = int(headers.get("Inference-Header-Content-Length", len(body)))
    doc = json.loads(body[:hl])
    off, out = hl, {}
    for o in doc["outputs"]:
        size = o.get("parameters", {}).get("binary_data_size")
        if size is not None:
            out[o["name"]] = (o, body[off:off + size])
            off += size
        else:
            out[o["name"]] = (o, None)
    return doc, out, off == len(body)


def bytes_tensor(strings):
    return b"".join(struct.pack("<I", len(s)) + s for s in strings)


# ---- ONNX node tests through the server: inputs and expected outputs from their .pb files

NODE_CASES = ["test_add_int8", "test_add_uint64", "test_ai_onnx_ml_label_encoder_string_int", "test_equal_string",
              "test_cast_FLOAT16_to_DOUBLE", "test_and2d", "test_argmax_default_axis_random", "test_add_bcast"]
ONNX_TO_KSERVE = {1: ("FP32", "<f"), 2: ("UINT8", "<B"), 3: ("INT8", "<b"), 4: ("UINT16", "<H"), 5: ("INT16", "<h"),
                  6: ("INT32", "<i"), 7: ("INT64", "<q"), 8: ("BYTES", None), 9: ("BOOL", "<B"), 10: ("FP16", "<H"),
                  11: ("FP64", "<d"), 12: ("UINT32", "<I"), 13: ("UINT64", "<Q")}


def varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return v, i


def read_tensor_pb(path):
    """A TensorProto: (name, onnx data_type, dims, binary tensor bytes in the KServe layout)."""
    with open(path, "rb") as f:
        b = f.read()
    i, name, dt, dims, raw, ints, floats, doubles, strings = 0, "", 0, [], None, [], [], [], []
    while i < len(b):
        key, i = varint(b, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(b, i)
            vals = [v]
        elif wire == 2:
            n, i = varint(b, i)
            chunk, i = b[i:i + n], i + n
            vals = None
        elif wire == 5:
            chunk, i, vals = b[i:i + 4], i + 4, None
        else:
            chunk, i, vals = b[i:i + 8], i + 8, None
        if field == 1:
            dims += vals if vals else packed_varints(chunk)
        elif field == 2:
            dt = vals[0]
        elif field in (5, 7, 11):
            ints += vals if vals else packed_varints(chunk)
        elif field == 4:
            floats += list(struct.unpack("<%df" % (len(chunk) // 4), chunk))
        elif field == 10:
            doubles += list(struct.unpack("<%dd" % (len(chunk) // 8), chunk))
        elif field == 6:
            strings.append(chunk)
        elif field == 8:
            name = chunk.decode()
        elif field == 9:
            raw = chunk
    kserve, fmt = ONNX_TO_KSERVE[dt]
    if dt == 8:
        data = bytes_tensor(strings)
    elif raw is not None:
        data = raw
    else:
        vals = floats or doubles or ints
        if fmt in ("<b", "<h", "<i", "<q"):  # varints of negative numbers are two's complement
            bits = {"<b": 8, "<h": 16, "<i": 32, "<q": 64}[fmt]
            vals = [v - (1 << 64) if v >= 1 << 63 else v for v in vals]
            vals = [((v + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1)) for v in vals]
        data = b"".join(struct.pack(fmt, v) for v in vals)
    return name, kserve, [int(d) for d in dims], data


def packed_varints(chunk):
    out, i = [], 0
    while i < len(chunk):
        v, i = varint(chunk, i)
        out.append(v)
    return out


def same_tensor(kserve, got, want):
    if kserve in ("FP32", "FP64"):
        fmt = "<f" if kserve == "FP32" else "<d"
        n = len(want) // struct.calcsize(fmt)
        if len(got) != len(want):
            return False
        a, b = struct.unpack("<%d%s" % (n, fmt[1]), got), struct.unpack("<%d%s" % (n, fmt[1]), want)
        return all(x == y or abs(x - y) <= 1e-5 + 1e-4 * abs(y) or (math.isnan(x) and math.isnan(y))
                   for x, y in zip(a, b))
    return got == want


def test_node_cases(srv):
    for case in NODE_CASES:
        model = "node_" + case
        st, meta = srv.json("GET", "/v2/models/" + model)
        if not check(st == 200, "%s metadata: %s %s" % (case, st, meta)):
            continue
        ds = os.path.join(NODE, case, "test_data_set_0")
        inputs, blobs = [], []
        for k, io in enumerate(meta["inputs"]):
            name, kserve, dims, data = read_tensor_pb(os.path.join(ds, "input_%d.pb" % k))
            inputs.append({"name": io["name"], "shape": dims, "datatype": kserve,
                           "parameters": {"binary_data_size": len(data)}})
            blobs.append(data)
        body, headers = binary_request({"inputs": inputs, "parameters": {"binary_data_output": True}}, blobs)
        st, rh, data = srv.request("POST", "/v2/models/%s/infer" % model, body, headers)
        if not check(st == 200, "%s: infer %s %s" % (case, st, data[:300])):
            continue
        doc, out, exact = parse_binary_response(rh, data)
        for k, io in enumerate(meta["outputs"]):
            _, kserve, dims, want = read_tensor_pb(os.path.join(ds, "output_%d.pb" % k))
            o, blob = out[io["name"]]
            check(o["datatype"] == kserve and o["shape"] == dims and same_tensor(kserve, blob, want),
                  "%s: output %s equals the node test's (%s %s)" % (case, io["name"], o["datatype"], o["shape"]))
    # NaN and infinity have no JSON form: asking for them as JSON is a 400 that says what to do.
    ds = os.path.join(NODE, "test_cast_FLOAT16_to_DOUBLE", "test_data_set_0")
    _, kserve, dims, data = read_tensor_pb(os.path.join(ds, "input_0.pb"))
    body, headers = binary_request({"inputs": [{"name": "input", "shape": dims, "datatype": kserve,
                                                "parameters": {"binary_data_size": len(data)}}]}, [data])
    expect_4xx(srv, "NaN output as JSON", 400, "POST", "/v2/models/node_test_cast_FLOAT16_to_DOUBLE/infer", body,
               headers, contains="binary_data")


def test_health_metadata(srv):
    check(srv.request("GET", "/v2/health/live")[0] == 200, "health/live is 200")
    check(srv.request("GET", "/v2/health/ready")[0] == 200, "health/ready is 200")
    st, meta = srv.json("GET", "/v2")
    check(st == 200 and meta["name"] == "kiln" and "binary_tensor_data" in meta["extensions"],
          "server metadata with extensions: %s" % meta)
    st, m = srv.json("GET", "/v2/models/digits")
    check(st == 200 and m["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
          and [o["name"] for o in m["outputs"]] == ["logits", "label"]
          and m["outputs"][1]["datatype"] == "INT64" and m["versions"] == ["1"], "digits metadata: %s" % m)
    check(srv.request("GET", "/v2/models/digits/ready")[0] == 200, "digits ready")
    check(srv.request("GET", "/v2/models/digits/versions/1/ready")[0] == 200, "digits version 1 ready")
    st, c = srv.json("GET", "/v2/models/digits/config")
    check(st == 200 and c["max_batch_size"] == 16 and c["dynamic_batching"]["preferred_batch_size"] == [8, 16]
          and c["instance_group"][0]["count"] == 2 and c["input"][0]["dims"] == [1, 8, 8]
          and c["output"][0] == {"name": "logits", "data_type": "TYPE_FP32", "dims": [10]},
          "digits config: %s" % c)
    st, c = srv.json("GET", "/v2/models/digits_auto/config")
    check(st == 200 and c["max_batch_size"] == 4 and c["input"][0]["dims"] == [1, 8, 8]
          and "dynamic_batching" in c, "auto-completed config (max_batch_size 4, batching on): %s" % c)
    st, c = srv.json("GET", "/v2/models/add/config")
    check(st == 200 and c["max_batch_size"] == 0 and c["input"][0]["dims"] == [3, 4, 5],
          "auto-completed config of a fixed-shape model: %s" % c)
    st, m = srv.json("GET", "/v2/models/digits_v")
    check(st == 200 and m["versions"] == ["1", "2"], "version_policy all serves both versions: %s" % m)
    check(srv.request("GET", "/v2/models/digits_v/versions/1")[0] == 200, "digits_v version 1 metadata")
    check(srv.request("GET", "/v2/models/digits_v/versions/3")[0] == 404, "digits_v version 3 is 404")


def test_json_infer(srv, images, logits):
    st, r = infer_json(srv, "digits", [{"name": "image", "shape": [16, 1, 8, 8], "datatype": "FP32",
                                        "data": images}])
    if not check(st == 200, "JSON infer of 16 images: %s %s" % (st, r)):
        return
    out = {o["name"]: o for o in r["outputs"]}
    check(out["logits"]["shape"] == [16, 10] and close(out["logits"]["data"], logits),
          "JSON logits equal demo/test_logits.npy")
    labels = [max(range(10), key=lambda c: logits[i * 10 + c]) for i in range(16)]
    check(out["label"]["data"] == labels, "JSON labels are the argmax of the reference logits")
    # Nested data (row-major) instead of flat, and one requested output.
    nested = [[[images[i * 64 + r * 8:i * 64 + r * 8 + 8] for r in range(8)]] for i in range(2)]
    st, r = infer_json(srv, "digits", [{"name": "image", "shape": [2, 1, 8, 8], "datatype": "FP32",
                                        "data": nested}], outputs=[{"name": "label"}])
    check(st == 200 and [o["name"] for o in r["outputs"]] == ["label"] and r["outputs"][0]["data"] == labels[:2],
          "nested JSON data and one requested output: %s" % (r,))
    # reshape: the client sends [B, 64]; the model gets [B, 1, 8, 8].
    st, r = infer_json(srv, "digits_flat", [{"name": "image", "shape": [3, 64], "datatype": "FP32",
                                             "data": images[:3 * 64]}])
    check(st == 200 and close(r["outputs"][0]["data"], logits[:30]), "reshape input: %s" % (st,))
    # auto-completed model, batch within its max_batch_size of 4, and beyond it.
    st, r = infer_json(srv, "digits_auto", [{"name": "image", "shape": [4, 1, 8, 8], "datatype": "FP32",
                                             "data": images[:4 * 64]}])
    check(st == 200 and close(r["outputs"][0]["data"], logits[:40]), "digits_auto batch 4: %s" % (st,))
    # Fixed-shape model: x + y exactly (the float32 sum of float32 values).
    rnd = random.Random(7)
    x = [f32(rnd.uniform(-10, 10)) for _ in range(60)]
    y = [f32(rnd.uniform(-10, 10)) for _ in range(60)]
    st, r = infer_json(srv, "add", [{"name": "x", "shape": [3, 4, 5], "datatype": "FP32", "data": x},
                                    {"name": "y", "shape": [3, 4, 5], "datatype": "FP32", "data": y}])
    check(st == 200 and [f32(v) for v in r["outputs"][0]["data"]] == [f32(a + b) for a, b in zip(x, y)]
          and r["outputs"][0]["shape"] == [3, 4, 5], "add: x + y: %s" % (st,))
    # Strings (BYTES) in, BOOL out.
    st, r = infer_json(srv, "strings", [{"name": "x", "shape": [2], "datatype": "BYTES", "data": ["a", "bc"]},
                                        {"name": "y", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}])
    check(st == 200 and r["outputs"][0]["datatype"] == "BOOL" and r["outputs"][0]["data"] == [True, False],
          "string equality: %s" % (r,))
    st, m = srv.json("GET", "/v2/models/labels")
    check(st == 200 and m["inputs"][0]["datatype"] == "BYTES" and m["outputs"][0]["datatype"] == "INT64",
          "label encoder metadata: %s" % (m,))
    # The same model as an engine file, from a model.onnx folder with external data, and
    # from the file default_model_filename names (in version folder 7).
    for name in ("digits_engine", "digits_external", "digits_named"):
        st, r = infer_json(srv, name, [{"name": "image", "shape": [2, 1, 8, 8], "datatype": "FP32",
                                        "data": images[:128]}])
        check(st == 200 and r["model_version"] == ("7" if name == "digits_named" else "1")
              and close(r["outputs"][0]["data"], logits[:20]), "%s: %s %s" % (name, st, r))


def test_classification(srv, images, logits):
    """Triton's classification extension: the top K of each row as "value:index[:label]"."""
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    for model, labels in (("digits", None), ("digits_labels", words)):
        st, r = infer_json(srv, model, [{"name": "image", "shape": [3, 1, 8, 8], "datatype": "FP32",
                                         "data": images[:3 * 64]}],
                           outputs=[{"name": "logits", "parameters": {"classification": 3}}])
        if not check(st == 200, "%s: classification: %s %s" % (model, st, r)):
            continue
        o = r["outputs"][0]
        ok = o["datatype"] == "BYTES" and o["shape"] == [3, 3] and len(o["data"]) == 9
        for row in range(3 if ok else 0):
            ref = sorted(range(10), key=lambda c: (-logits[row * 10 + c], c))[:3]
            for j in range(3):
                parts = o["data"][row * 3 + j].split(":")
                ok = ok and int(parts[1]) == ref[j] and abs(float(parts[0]) - logits[row * 10 + ref[j]]) < 1e-4
                ok = ok and (parts[2:] == [labels[ref[j]]] if labels else len(parts) == 2)
        check(ok, "%s: top 3 of each row with %s: %s" % (model, "labels" if labels else "no labels", o))
    # Binary: BYTES elements, length-prefixed.
    body, headers = binary_request({"inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                                "parameters": {"binary_data_size": 256}}],
                                    "outputs": [{"name": "logits", "parameters": {"classification": 1,
                                                                                 "binary_data": True}}]},
                                   [struct.pack("<64f", *images[:64])])
    st, rh, data = srv.request("POST", "/v2/models/digits_labels/infer", body, headers)
    doc, out, exact = parse_binary_response(rh, data)
    best = max(range(10), key=lambda c: logits[c])
    blob = out["logits"][1]
    check(st == 200 and exact and struct.unpack("<I", blob[:4])[0] == len(blob) - 4
          and blob[4:].decode().endswith(":%d:%s" % (best, words[best])), "binary classification: %r" % (blob,))
    J = lambda d: json.dumps(d).encode()
    img = {"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": images[:64]}
    expect_4xx(srv, "classification above the row's values", 400, "POST", "/v2/models/digits/infer",
               J({"inputs": [img], "outputs": [{"name": "logits", "parameters": {"classification": 11}}]}),
               contains="out of range [1, 10]")
    expect_4xx(srv, "classification 0", 400, "POST", "/v2/models/digits/infer",
               J({"inputs": [img], "outputs": [{"name": "logits", "parameters": {"classification": 0}}]}))


def test_binary_infer(srv, images, logits):
    raw = struct.pack("<%df" % (16 * 64), *images)
    body, headers = binary_request({"inputs": [{"name": "image", "shape": [16, 1, 8, 8], "datatype": "FP32",
                                                "parameters": {"binary_data_size": len(raw)}}],
                                    "parameters": {"binary_data_output": True}}, [raw])
    st, rh, data = srv.request("POST", "/v2/models/digits/infer", body, headers)
    if not check(st == 200, "binary infer: %s %s" % (st, data[:200])):
        return
    doc, out, exact = parse_binary_response(rh, data)
    check(exact, "binary response: the binary_data_size values add up to the body")
    o, blob = out["logits"]
    check(o["datatype"] == "FP32" and o["shape"] == [16, 10] and blob is not None
          and close(list(struct.unpack("<160f", blob)), logits), "binary logits equal the reference")
    o, blob = out["label"]
    labels = [max(range(10), key=lambda c: logits[i * 10 + c]) for i in range(16)]
    check(blob is not None and list(struct.unpack("<16q", blob)) == labels, "binary labels")
    # Binary in, mixed out: logits as JSON, label binary.
    body, headers = binary_request({"inputs": [{"name": "image", "shape": [2, 1, 8, 8], "datatype": "FP32",
                                                "parameters": {"binary_data_size": 512}}],
                                    "outputs": [{"name": "logits", "parameters": {"binary_data": False}},
                                                {"name": "label", "parameters": {"binary_data": True}}]},
                                   [raw[:512]])
    st, rh, data = srv.request("POST", "/v2/models/digits/infer", body, headers)
    if not check(st == 200, "mixed outputs: %s %s" % (st, data[:300])):
        return
    doc, out, exact = parse_binary_response(rh, data)
    check(exact and close(out["logits"][0]["data"], logits[:20])
          and struct.unpack("<2q", out["label"][1]) == tuple(labels[:2]), "mixed JSON/binary outputs")
    # BYTES in the binary format, BOOL out binary.
    xs, ys = [b"kiln", b"\xc3\xa9t\xc3\xa9"], [b"kiln", b"x"]
    bx, by = bytes_tensor(xs), bytes_tensor(ys)
    body, headers = binary_request({"inputs": [
        {"name": "x", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(bx)}},
        {"name": "y", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(by)}}],
        "outputs": [{"name": "z", "parameters": {"binary_data": True}}]}, [bx, by])
    st, rh, data = srv.request("POST", "/v2/models/strings/infer", body, headers)
    if not check(st == 200, "binary BYTES: %s %s" % (st, data[:300])):
        return
    doc, out, exact = parse_binary_response(rh, data)
    check( out["z"][1] == b"\x01\x00", "binary BYTES input, BOOL output: %s %s" % (st, data[:200]))


def test_batching(srv, images, logits):
    before = srv.metrics()
    n = 32
    results = [None] * n

    def one(i):
        k = i % 16
        results[i] = infer_json(srv, "digits", [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                                 "data": image_rows(images, k, 1)}])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = all(r and r[0] == 200 and close(r[1]["outputs"][0]["data"], logits[(i % 16) * 10:(i % 16) * 10 + 10])
             for i, r in enumerate(results))
    check(ok, "32 concurrent requests each get their own row's logits")
    after = srv.metrics()
    key = '{model="digits",version="1"}'
    count = after["nv_inference_count" + key] - before.get("nv_inference_count" + key, 0)
    execs = after["nv_inference_exec_count" + key] - before.get("nv_inference_exec_count" + key, 0)
    check(count == n and execs < count, "dynamic batching: %d inferences in %d executions" % (count, execs))
    check(after["nv_inference_request_success" + key] >= n, "metrics count the successes")
    check(after["nv_inference_pending_request_count" + key] == 0, "no pending requests afterwards")
    check(after["nv_inference_queue_duration_us" + key] > 0 and
          after["nv_inference_compute_infer_duration_us" + key] > 0, "queue and compute durations are counted")
    st, s = srv.json("GET", "/v2/models/digits/stats")
    check(st == 200 and s["model_stats"][0]["inference_count"] >= n
          and s["model_stats"][0]["execution_count"] < s["model_stats"][0]["inference_count"],
          "statistics extension: %s" % (s,))


def test_queue_limit_and_timeout(srv, images):
    results = [None] * 6

    def one(i):
        results[i] = infer_json(srv, "digits_queue", [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                                       "data": image_rows(images, i, 1)}])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join()
    codes = sorted(r[0] for r in results)
    rejected = [r for r in results if r[0] == 503]
    check(codes.count(200) == 2 and len(rejected) == 4
          and all("maximum queue size" in r[1]["error"] for r in rejected),
          "max_queue_size 2: two served, four rejected with a clear error: %s" % (results,))
    # A 1 ms timeout while the batcher waits 400 ms for more requests: rejected in the queue.
    t0 = time.time()
    st, r = infer_json(srv, "digits_timeout", [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                                "data": image_rows(images, 0, 1)}], params={"timeout": 1000})
    check(st == 503 and "timeout" in r["error"], "parameters.timeout rejects a request in the queue: %s %s" % (st, r))
    st, r = infer_json(srv, "digits_timeout", [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                                "data": image_rows(images, 0, 1)}], params={"timeout": 5000000})
    check(st == 200, "a generous timeout is served: %s %s" % (st, r))
    check(time.time() - t0 < 5, "timeouts do not hang")


def test_client_gone(srv, images):
    """A client that closes its connection while its request waits in the batcher (400 ms
    delay) cancels it: it never runs, counts as a failure, and nothing stays pending."""
    key = '{model="digits_timeout",version="1"}'
    before = srv.metrics()
    body = json.dumps({"inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                   "data": images[:64]}]}).encode()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(b"POST /v2/models/digits_timeout/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    time.sleep(0.1)
    sock.close()
    time.sleep(0.6)
    after = srv.metrics()
    d = {k: after[k + key] - before.get(k + key, 0) for k in
         ("nv_inference_exec_count", "nv_inference_request_failure", "nv_inference_request_success")}
    check(d["nv_inference_exec_count"] == 0 and d["nv_inference_request_failure"] == 1
          and d["nv_inference_request_success"] == 0 and after["nv_inference_pending_request_count" + key] == 0,
          "a request whose client left is cancelled in the queue: %s" % d)


def expect_4xx(srv, what, status, method, path, body=None, headers=None, contains=None):
    st, _, data = srv.request(method, path, body, headers)
    try:
        msg = json.loads(data).get("error", "") if data else ""
    except ValueError:
        msg = None
    ok = (st in status if isinstance(status, tuple) else st == status) and msg is not None and (status == 405 or msg) and (contains is None or contains in msg)
    check(ok, "%s: expected %s with an error message%s; got %d %r" %
          (what, status, " containing %r" % contains if contains else "", st, data[:300]))


def test_bad_requests(srv, images):
    img = {"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": images[:64]}
    infer = "/v2/models/digits/infer"
    J = lambda d: json.dumps(d).encode()
    expect_4xx(srv, "malformed JSON", 400, "POST", infer, b'{"inputs": [', contains="malformed JSON")
    expect_4xx(srv, "not an object", 400, "POST", infer, b'[1, 2]')
    expect_4xx(srv, "binary garbage", 400, "POST", infer, bytes(range(256)))
    expect_4xx(srv, "deep nesting", 400, "POST", infer, b"[" * 30000 + b"]" * 30000)
    expect_4xx(srv, "duplicate keys", 400, "POST", infer, b'{"inputs": [], "inputs": []}')
    expect_4xx(srv, "unknown model", 404, "POST", "/v2/models/nosuch/infer", J({"inputs": [img]}), contains="unknown model")
    expect_4xx(srv, "unknown model metadata", 404, "GET", "/v2/models/nosuch")
    expect_4xx(srv, "unknown input", 400, "POST", infer, J({"inputs": [dict(img, name="pixels")]}), contains="pixels")
    expect_4xx(srv, "missing input", 400, "POST", "/v2/models/add/infer",
               J({"inputs": [{"name": "x", "shape": [3, 4, 5], "datatype": "FP32", "data": [0.0] * 60}]}), contains="'y'")
    expect_4xx(srv, "repeated input", 400, "POST", infer, J({"inputs": [img, img]}), contains="twice")
    expect_4xx(srv, "wrong datatype", 400, "POST", infer, J({"inputs": [dict(img, datatype="INT32")]}), contains="FP32")
    expect_4xx(srv, "unknown datatype", 400, "POST", infer, J({"inputs": [dict(img, datatype="FP33")]}))
    expect_4xx(srv, "wrong shape", 400, "POST", infer, J({"inputs": [dict(img, shape=[1, 8, 8])]}), contains="shape")
    expect_4xx(srv, "negative dim", 400, "POST", infer, J({"inputs": [dict(img, shape=[1, 1, -8, 8])]}))
    expect_4xx(srv, "too few elements", 400, "POST", infer, J({"inputs": [dict(img, data=images[:63])]}), contains="63")
    expect_4xx(srv, "too many elements", 400, "POST", infer, J({"inputs": [dict(img, data=images[:65])]}))
    expect_4xx(srv, "string where a number goes", 400, "POST", infer, J({"inputs": [dict(img, data=["x"] * 64)]}))
    expect_4xx(srv, "batch above max_batch_size", 400, "POST", infer,
               J({"inputs": [dict(img, shape=[17, 1, 8, 8], data=(images * 2)[:17 * 64])]}), contains="batch")
    expect_4xx(srv, "huge shape", 400, "POST", infer,
               J({"inputs": [dict(img, shape=[16, 1, 1 << 40, 1 << 40])]}))
    expect_4xx(srv, "unknown output", 400, "POST", infer, J({"inputs": [img], "outputs": [{"name": "probs"}]}))
    expect_4xx(srv, "no inputs", 400, "POST", infer, J({"outputs": []}))
    expect_4xx(srv, "bad timeout", 400, "POST", infer, J({"inputs": [img], "parameters": {"timeout": "soon"}}))
    # Binary data that does not add up.
    raw = struct.pack("<64f", *images[:64])
    hdr = {"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "parameters": {"binary_data_size": 256}}
    body, h = binary_request({"inputs": [hdr]}, [raw[:200]])
    expect_4xx(srv, "binary_data_size past the body", 400, "POST", infer, body, h, contains="remain")
    body, h = binary_request({"inputs": [hdr]}, [raw + b"xx"])
    expect_4xx(srv, "bytes after the binary inputs", 400, "POST", infer, body, h, contains="add up")
    body, h = binary_request({"inputs": [dict(hdr, parameters={"binary_data_size": 252})]}, [raw[:252]])
    expect_4xx(srv, "binary size not the shape's", 400, "POST", infer, body, h, contains="need")
    body, h = binary_request({"inputs": [hdr]}, [raw])
    h["Inference-Header-Content-Length"] = str(len(body) + 1)
    expect_4xx(srv, "header length past the body", 400, "POST", infer, body, h)
    h["Inference-Header-Content-Length"] = "-3"
    expect_4xx(srv, "negative header length", 400, "POST", infer, body, h)
    # As Triton: a header length of 0 means the whole body is JSON.
    st, _, data = srv.request("POST", infer, J({"inputs": [img]}), {"Inference-Header-Content-Length": "0"})
    check(st == 200, "Inference-Header-Content-Length 0 is a JSON request: %s %s" % (st, data[:200]))
    expect_4xx(srv, "compressed body", 415, "POST", infer, J({"inputs": [img]}), {"Content-Encoding": "gzip"},
               contains="Content-Encoding")
    bad_bytes = struct.pack("<I", 1) + b"a" + struct.pack("<I", 100) + b"abc"
    body, h = binary_request({"inputs": [
        {"name": "x", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(bad_bytes)}},
        {"name": "y", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]}, [bad_bytes])
    expect_4xx(srv, "BYTES element longer than its data", 400, "POST", "/v2/models/strings/infer", body, h,
               contains="declares 100 bytes")
    # Paths and methods.
    expect_4xx(srv, "hidden model name", 400, "GET", "/v2/models/.hidden/config")
    # The server decodes %2F before routing: the extra '/' makes a path no route matches.
    expect_4xx(srv, "dot-dot model name", (400, 404), "GET", "/v2/models/..%2f..%2fetc/config")
    expect_4xx(srv, "dot-dot load", (400, 404), "POST", "/v2/repository/models/..%2Fdigits/load")
    expect_4xx(srv, "bad version", 400, "GET", "/v2/models/digits/versions/x1")
    expect_4xx(srv, "unknown path", 404, "GET", "/v2/nothing/here")
    expect_4xx(srv, "wrong method", 405, "GET", infer)
    # A body over --max-request-bytes (1 MiB here).
    # A declared Content-Length over the limit is refused before the body is read ...
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (infer.encode(), (1 << 20) + 1))
    reply = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    sock.close()
    check(reply.startswith(b"HTTP/1.1 413") and b"--max-request-bytes" in reply, "declared body too large: %r" % reply[:200])
    # ... and a chunked body that grows past it is read to its end and refused.
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    c.request("POST", infer, body=iter([b" " * 65536] * 20), encode_chunked=True)
    r = c.getresponse()
    check(r.status == 413, "chunked body too large: %d" % r.status)
    c.close()
    # JSON over --max-json-bytes (64 KiB here), in a body within --max-request-bytes.
    big = json.dumps({"inputs": [dict(img, data=[0.0] * 40000)]}).encode()
    expect_4xx(srv, "JSON too large", 413, "POST", infer, big, contains="--max-json-bytes")
    # Headers larger than --max-header-bytes (16 KiB by default).
    expect_status = srv.request("GET", "/v2/health/live", headers={"X-Big": "x" * 40000})[0]
    check(expect_status in (413, 431, 400), "oversized headers are refused: %d" % expect_status)
    check(srv.request("GET", "/v2/health/live")[0] == 200, "the server is alive after the bad requests")
    st, r = infer_json(srv, "digits", [img])
    check(st == 200, "and still serves: %s" % (st,))
    m = srv.metrics()
    check(m['nv_inference_request_failure{model="digits",version="1"}'] >= 20, "failures are counted in /metrics")


def test_load_unload(srv, images):
    check(srv.request("POST", "/v2/repository/models/add/unload")[0] == 200, "unload add")
    check(srv.request("GET", "/v2/models/add/ready")[0] == 503, "add is not ready after unload")
    st, r = infer_json(srv, "add", [])
    check(st == 503, "infer on an unloaded model is 503: %s" % (st,))
    st, idx = srv.json("POST", "/v2/repository/index")
    states = {(e["name"], e.get("state")) for e in idx}
    check(("add", "UNAVAILABLE") in states and ("digits", "READY") in states, "index after unload: %s" % idx)
    check(srv.request("POST", "/v2/repository/models/add/load")[0] == 200, "load add again")
    check(srv.request("GET", "/v2/models/add/ready")[0] == 200, "add is ready after load")
    # Reload a model twice while clients keep sending requests: every request is answered,
    # and answered 200 (a request that meets the old version as it drains goes to the new one).
    results, done = [], threading.Event()

    def client():
        while not done.is_set():
            results.append(infer_json(srv, "digits", [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                                       "data": images[:64]}])[0])

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    st1 = srv.request("POST", "/v2/repository/models/digits/load")[0]
    st2 = srv.request("POST", "/v2/repository/models/digits/load")[0]
    time.sleep(0.05)
    done.set()
    for t in threads:
        t.join()
    check(st1 == 200 and st2 == 200 and results and all(s == 200 for s in results),
          "reloads under load: %d requests, statuses %s" % (len(results), sorted(set(results))))
    expect_4xx(srv, "load a broken model", 400, "POST", "/v2/repository/models/broken/load", contains="broken")
    st, idx = srv.json("POST", "/v2/repository/index")
    broken = [e for e in idx if e["name"] == "broken"]
    check(broken and broken[0].get("state") == "UNAVAILABLE" and broken[0].get("reason"),
          "index shows the broken model with its reason: %s" % broken)
    expect_4xx(srv, "unload what is not loaded", 404, "POST", "/v2/repository/models/nosuch/unload")
    expect_4xx(srv, "load a missing folder", 400, "POST", "/v2/repository/models/nosuch/load")


class IdLedger:
    """Requests that each carry a unique KServe "id" (echoed in the response), and every
    answer recorded by id: the exactly-once tests check that each id got one answer, that a
    200 carries its own id and its own row's logits, and that anything else is a clean
    refusal (a 503 with a message, or a connection the server refused or closed)."""

    def __init__(self, srv, images, logits, tag):
        self.srv, self.images, self.logits, self.tag = srv, images, logits, tag
        self.lock = threading.Lock()
        self.sent, self.answers, self.n = {}, {}, 0

    def send(self, model="digits", conn=None):
        with self.lock:
            rid, self.n = "%s-%d" % (self.tag, self.n), self.n + 1
            k = self.n % 16
            self.sent[rid] = (k, time.time())
        body = json.dumps({"id": rid, "inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                                  "data": image_rows(self.images, k, 1)}]}).encode()
        try:
            if conn is None:
                st, _, data = self.srv.request("POST", "/v2/models/%s/infer" % model, body)
            else:
                conn.request("POST", "/v2/models/%s/infer" % model, body=body)
                r = conn.getresponse()
                st, data = r.status, r.read()
            try:
                answer = (st, json.loads(data))
            except ValueError:
                answer = (st, data)
        except OSError as e:  # ConnectionRefusedError, ConnectionResetError, RemoteDisconnected
            answer = ("refused", type(e).__name__)
        with self.lock:
            self.answers.setdefault(rid, []).append(answer)
        return rid, answer

    def loop(self, stop, model="digits"):
        while not stop.is_set():
            self.send(model)

    def check(self, what, allowed_refusals):
        """Each id answered exactly once; 200s right; refusals among allowed_refusals
        (statuses and/or "refused"). Returns the number of 200s."""
        ok = 0
        for rid, (k, _) in self.sent.items():
            a = self.answers.get(rid, [])
            if not check(len(a) == 1, "%s: request %s answered %d times" % (what, rid, len(a))):
                continue
            st, doc = a[0]
            if st == 200:
                good = (isinstance(doc, dict) and doc.get("id") == rid
                        and close(doc["outputs"][0]["data"], self.logits[k * 10:k * 10 + 10]))
                check(good, "%s: %s is answered with its own id and row %d: %s" % (what, rid, k, str(doc)[:200]))
                ok += good
            else:
                clean = st in allowed_refusals and (st == "refused" or (isinstance(doc, dict) and doc.get("error")))
                check(clean, "%s: %s refused cleanly (allowed %s): %s %s" % (what, rid, allowed_refusals, st,
                                                                            str(doc)[:200]))
        extra = set(self.answers) - set(self.sent)
        check(not extra, "%s: no answers to ids never sent: %s" % (what, sorted(extra)[:5]))
        return ok


def wait_pending(srv, model, n, timeout=5.0):
    """Waits until /metrics shows n requests pending on model (queued in its batcher)."""
    key = 'nv_inference_pending_request_count{model="%s",version="1"}' % model
    deadline = time.time() + timeout
    while time.time() < deadline:
        if srv.metrics().get(key, 0) >= n:
            return True
        time.sleep(0.005)
    return check(False, "%d requests pending on %s" % (n, model))


def start_threads(fns):
    threads = [threading.Thread(target=f) for f in fns]
    for t in threads:
        t.start()
    return threads


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_wait(srv, images):
    """Requests waiting in the batcher cost no CPU: 4 requests parked 400 ms each in
    digits_timeout's batcher (their connection threads wake every 20 ms to look at the
    client) take well under the 1.6 s that busy waiting would burn."""
    results = []
    threads = start_threads([lambda: results.append(infer_json(srv, "digits_timeout", [
        {"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": images[:64]}])[0]) for _ in range(4)])
    t0 = cpu_seconds(srv.proc.pid)
    for t in threads:
        t.join()
    used = cpu_seconds(srv.proc.pid) - t0
    check(results == [200] * 4 and used < 0.3, "4 requests waiting 400 ms used %.2f s of CPU: %s" % (used, results))


def test_exactly_once_reload(srv, images, logits):
    """Concurrent load with dynamic batching on, across an explicit unload and load of the
    model: every id answered exactly once, 200 with its own output or 503 while unloaded;
    requests queued in the batcher when the unload comes are answered 200 (it drains)."""
    key = '{model="digits",version="1"}'
    before = srv.metrics().get("nv_inference_request_success" + key, 0)
    busy = IdLedger(srv, images, logits, "busy")
    stop = threading.Event()
    threads = start_threads([lambda: busy.loop(stop) for _ in range(8)])
    time.sleep(0.3)
    busy_ok_mid = sum(1 for a in list(busy.answers.values()) if a and a[0][0] == 200)
    after_load = srv.metrics().get("nv_inference_request_success" + key, 0)
    check(busy_ok_mid > 0 and after_load - before >= busy_ok_mid,
          "metrics count the successes under load (%d answered, %d counted)" % (busy_ok_mid, after_load - before))
    # Three requests parked in digits_timeout's batcher (400 ms delay) when it is unloaded.
    parked = IdLedger(srv, images, logits, "parked")
    pthreads = start_threads([lambda: parked.send("digits_timeout") for _ in range(3)])
    wait_pending(srv, "digits_timeout", 3)
    st_u1 = srv.request("POST", "/v2/repository/models/digits_timeout/unload")[0]
    st_u2 = srv.request("POST", "/v2/repository/models/digits/unload")[0]
    time.sleep(0.1)
    late = IdLedger(srv, images, logits, "late")
    late.send("digits_timeout")
    st_l1 = srv.request("POST", "/v2/repository/models/digits/load")[0]
    st_l2 = srv.request("POST", "/v2/repository/models/digits_timeout/load")[0]
    time.sleep(0.3)
    stop.set()
    for t in threads + pthreads:
        t.join()
    check((st_u1, st_u2, st_l1, st_l2) == (200, 200, 200, 200), "unload and load: %s" % ((st_u1, st_u2, st_l1, st_l2),))
    check(parked.check("queued across unload", ()) == 3, "the 3 queued requests are answered 200 by the unload")
    check(late.check("after unload", (503,)) == 0, "a request to an unloaded model is refused 503")
    n_ok = busy.check("load across unload/load", (503,))
    statuses = [a[0][0] for a in busy.answers.values()]
    print("exactly once across unload/load: %d requests, %d answered 200, %d refused 503" %
          (len(busy.sent), n_ok, statuses.count(503)))
    check(n_ok >= 20 and len(busy.sent) == len(busy.answers),
          "under load across unload/load: %d requests, %d answered 200, %d 503" %
          (len(busy.sent), n_ok, statuses.count(503)))


def test_exactly_once_sigterm(repo, images, logits):
    """SIGTERM under load: requests in flight are answered 200 with their own output, a
    request on a kept-alive connection during the drain gets 503, later connections are
    refused, every id answered exactly once."""
    srv = Server(repo, "--model-control-mode", "explicit", "--load-model", "digits", "--load-model", "digits_timeout")
    busy = IdLedger(srv, images, logits, "busy")
    stop = threading.Event()
    threads = start_threads([lambda: busy.loop(stop) for _ in range(8)])
    keep = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    kept = IdLedger(srv, images, logits, "kept")
    kept.send("digits", conn=keep)
    time.sleep(0.2)
    parked = IdLedger(srv, images, logits, "parked")
    pthreads = start_threads([lambda: parked.send("digits_timeout") for _ in range(3)])
    wait_pending(srv, "digits_timeout", 3)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    kept.send("digits", conn=keep)  # during the drain (the parked ones wait until 400 ms)
    rc = srv.proc.wait(timeout=30)
    for t in pthreads:
        t.join()
    after = IdLedger(srv, images, logits, "after")
    after.send()
    stop.set()
    for t in threads:
        t.join()
    keep.close()
    srv.err.seek(0)
    log = srv.err.read().decode()
    at = max(log.find("Sanitizer"), log.find("runtime error"))
    check(at < 0, "sigterm under load: no sanitizer report: %s" % log[max(0, at - 200):at + 4000])
    check(rc == 0, "SIGTERM under load exits 0 (%s): %s" % (rc, log[-400:]))
    check(parked.check("in flight at SIGTERM", ()) == 3, "the 3 requests in flight at SIGTERM are answered 200")
    kept_answers = [kept.answers[r][0][0] for r in sorted(kept.answers)]
    check(kept.check("kept-alive connection", (503, "refused")) >= 1 and kept_answers[-1] in (503, "refused"),
          "keep-alive: 200 before SIGTERM, refused during the drain: %s" % kept_answers)
    check(after.check("after exit", ("refused",)) == 0 and after.answers[list(after.answers)[0]][0][0] == "refused",
          "a connection after the exit is refused")
    n_ok = busy.check("load across SIGTERM", (503, "refused"))
    outcomes = [a[0][0] for a in busy.answers.values()]
    print("exactly once across SIGTERM: %d requests, %d answered 200, %d refused 503, %d connections refused" %
          (len(busy.sent), n_ok, outcomes.count(503), outcomes.count("refused")))
    check(n_ok > 0, "load across SIGTERM: %d requests, %d answered 200" % (len(busy.sent), n_ok))


def raw_http_mutant(srv, rnd, templates):
    """Sends one of the templates as raw HTTP/1.1 (Content-Length or chunked), mutated
    anywhere: request line, headers, framing, body; returns the reply's first bytes (b"" when
    the server closed without one; b"(timeout)" when it neither answered nor closed within
    10 s, which the caller counts as a failure)."""
    path, body, headers = rnd.choice(templates)
    head = ["POST %s HTTP/1.1" % path, "Host: 127.0.0.1"] + ["%s: %s" % kv for kv in (headers or {}).items()]
    if rnd.random() < 0.3:
        chunks, at = [], 0
        while at < len(body):
            k = rnd.randint(1, 512)
            chunks.append(b"%x\r\n%s\r\n" % (len(body[at:at + k]), body[at:at + k]))
            at += k
        payload = b"".join(chunks) + b"0\r\n\r\n"
        head.append("Transfer-Encoding: chunked")
    else:
        payload = body
        head.append("Content-Length: %d" % len(body))
    req = bytearray("\r\n".join(head).encode() + b"\r\n\r\n" + payload)
    end_of_head = req.find(b"\r\n\r\n") + 4
    for _ in range(rnd.randint(1, 8)):
        op = rnd.randrange(5)
        if not req:
            req = bytearray(b"G")
        limit = min(end_of_head, len(req))  # mostly in the request line and headers
        at = rnd.randrange(limit) if rnd.random() < 0.7 else rnd.randrange(len(req))
        if op == 0:
            req[at] = rnd.randrange(256)
        elif op == 1:
            del req[at:at + rnd.randint(1, 8)]
        elif op == 2:
            req[at:at] = rnd.choice([b"\r\n", b"\n", b":", b" ", b"\x00", b"%", b"%2F", b"99999999999999999999",
                                     b"-1", b"HTTP/1.0", b"Transfer-Encoding: chunked\r\n",
                                     b"Content-Length: 7\r\n", b"Expect: 100-continue\r\n",
                                     b"X-Long: " + b"a" * rnd.choice([100, 5000, 40000]) + b"\r\n"])
        elif op == 3:
            req = req[:rnd.randrange(len(req) + 1)]
        else:
            req[at:at] = bytes(req[at:at + rnd.randint(1, 64)])  # repeat a stretch
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        sock.sendall(bytes(req))
        sock.shutdown(socket.SHUT_WR)
        return sock.recv(64)
    except socket.timeout:
        return b"(timeout)"
    except OSError:
        return b""  # reset by the server: a close
    finally:
        sock.close()


def fuzz_client(srv, rnd, templates, paths, deadline, totals, lock):
    """One fuzzing client (test_fuzz): sends mutated requests until the deadline and adds its
    counts to totals."""
    allowed = {200, 400, 404, 405, 413, 415, 431, 503}
    n = bad = n_raw = 0
    while time.time() < deadline:
        n += 1
        if rnd.random() < 0.3:
            # Malformed HTTP: a whole request, request line and headers included, mutated.
            n_raw += 1
            reply = raw_http_mutant(srv, rnd, templates)
            if not (reply == b"" or reply.startswith(b"HTTP/1.")):
                bad += 1
                if bad <= 5:
                    check(False, "fuzz: malformed HTTP got %r" % reply[:80])
            continue
        path, body, headers = rnd.choice(templates)
        body = bytearray(body)
        headers = dict(headers or {})
        for _ in range(rnd.randint(1, 6)):
            op = rnd.randrange(6)
            if op == 0 and body:
                body[rnd.randrange(len(body))] = rnd.randrange(256)
            elif op == 1 and body:
                del body[rnd.randrange(len(body)):][:rnd.randint(1, 16)]
            elif op == 2:
                at = rnd.randrange(len(body) + 1)
                body[at:at] = rnd.choice([b"[", b"]", b"{", b"}", b'"', b",", b"-1", b"1e999", b"null",
                                          b"\\u0000", b"\xff\xfe", b"9" * 30])
            elif op == 3:
                headers["Inference-Header-Content-Length"] = rnd.choice(
                    [str(rnd.randrange(len(body) + 8)), "-1", "x", "", "99999999999999999999"])
            elif op == 4:
                body = body[:rnd.randrange(len(body) + 1)]
            else:
                path = rnd.choice(paths + [path, path.replace("digits", rnd.choice(["", "..", "%00", "a" * 300]))])
        method = rnd.choice(["POST"] * 6 + ["GET", "PUT", "DELETE"])
        try:
            st, _, _ = srv.request(method, path, bytes(body), headers)
        except (OSError, http.client.HTTPException) as e:
            st = "exception %r" % e
        if st not in allowed:
            bad += 1
            if bad <= 5:
                check(False, "fuzz: %s %s %r -> %s" % (method, path, bytes(body[:80]), st))
    with lock:
        totals["n"] += n
        totals["bad"] += bad
        totals["raw"] += n_raw


def test_fuzz(srv, images):
    """Random mutations of valid requests (bodies, header lengths, paths, methods) and
    malformed HTTP on raw sockets: every request gets an answer with a status the server
    uses, within the timeout, and the server stays up (under ASan in the sanitizer build)."""
    seconds = float(os.environ.get("KILN_SERVE_FUZZ_SECONDS", "2"))
    img = {"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": images[:64]}
    raw = struct.pack("<64f", *images[:64])
    bx = bytes_tensor([b"kiln", b"x"])
    templates = [
        ("/v2/models/digits/infer", json.dumps({"inputs": [img], "outputs": [{"name": "label"}]}).encode(), None),
        ("/v2/models/add/infer", json.dumps({"inputs": [
            {"name": "x", "shape": [3, 4, 5], "datatype": "FP32", "data": [1.0] * 60},
            {"name": "y", "shape": [3, 4, 5], "datatype": "FP32", "data": [2.0] * 60}]}).encode(), None),
        binary_request({"inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                    "parameters": {"binary_data_size": 256}}],
                        "parameters": {"binary_data_output": True}}, [raw]) + ("/v2/models/digits/infer",),
        binary_request({"inputs": [
            {"name": "x", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(bx)}},
            {"name": "y", "shape": [2], "datatype": "BYTES", "data": ["kiln", "y"]}]}, [bx]) + ("/v2/models/strings/infer",),
    ]
    templates = [(t[0], t[1], None) if isinstance(t[0], str) else (t[2], t[0], t[1]) for t in templates]
    paths = ["/v2", "/v2/health/ready", "/v2/models/digits", "/v2/models/digits/versions/1/config",
             "/v2/models/digits/stats", "/v2/repository/index", "/v2/models/strings/ready"]
    clients = int(os.environ.get("KILN_SERVE_FUZZ_CLIENTS", "1"))
    seed = int(os.environ.get("KILN_SERVE_FUZZ_SEED", "1234"))
    totals = {"n": 0, "bad": 0, "raw": 0}
    lock = threading.Lock()
    cpu0, t0 = cpu_seconds(srv.proc.pid), time.time()
    threads = [threading.Thread(target=fuzz_client, args=(srv, random.Random(seed + i), templates, paths,
                                                          time.time() + seconds, totals, lock))
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    n, bad = totals["n"], totals["bad"]
    check(n > 50 and bad == 0, "fuzz: %d random requests, %d unexpected answers" % (n, bad))
    print("fuzz: %d random requests in %.0f s from %d client(s) (%d of them malformed HTTP); the server used "
          "%.1f CPU s" % (n, time.time() - t0, clients, totals["raw"], cpu_seconds(srv.proc.pid) - cpu0))
    # Malformed HTTP on raw sockets: an answer (or a close), never a hang.
    for req in [b"GARBAGE\r\n\r\n", b"GET /v2 HTTP/9.9\r\n\r\n", b"GET /v2\r\n\r\n",
                b"GET /v2 HTTP/1.1\r\nNoColonHeader\r\n\r\n",
                b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
                b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{}",
                b"\x00\x01\x02\xff" * 64]:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        try:
            sock.sendall(req)
            sock.shutdown(socket.SHUT_WR)
            reply = sock.recv(4096)
        except OSError as e:
            reply = b"(%r)" % e
        finally:
            sock.close()
        check(reply == b"" or reply.startswith(b"HTTP/1.1 ") or reply.startswith(b"("),
              "malformed HTTP %r: %r" % (req[:40], reply[:80]))
    check(srv.request("GET", "/v2/health/live")[0] == 200, "alive after the fuzzing")


def test_drain(srv, images):
    """SIGTERM while a request waits in the batcher (400 ms delay): it is answered, exit 0."""
    result = []

    def one():
        result.append(infer_json(srv, "digits_timeout", [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                                          "data": images[:64]}]))

    t = threading.Thread(target=one)
    t.start()
    time.sleep(0.15)
    rc, log = srv.stop()
    t.join()
    check(result and result[0][0] == 200, "the in-flight request is answered during shutdown: %s" % result)
    check(rc == 0, "SIGTERM exits 0 (got %s): %s" % (rc, log[-500:]))
    check("draining" in log and "stopped" in log, "the shutdown is logged")


def test_exit_timeout(repo, images):
    """Past --exit-timeout-secs, shutdown cancels what is still waiting: the request queued
    behind a 1.5 s batching delay is answered 503 at once and the exit status says 1."""
    srv = Server(repo, "--model-control-mode", "explicit", "--load-model", "digits_queue", "--exit-timeout-secs", "0")
    result = []

    def one():
        result.append(infer_json(srv, "digits_queue", [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                                        "data": images[:64]}]))

    t = threading.Thread(target=one)
    t.start()
    time.sleep(0.2)
    t0 = time.time()
    rc, log = srv.stop()
    t.join()
    check(result and result[0][0] == 503 and "shutting down" in result[0][1]["error"],
          "a request past the exit timeout is cancelled: %s" % result)
    check(rc == 1 and time.time() - t0 < 1.2, "exit status 1, without waiting for the batcher (%s, %.2f s)" %
          (rc, time.time() - t0))
    check("still in flight" in log, "the log says requests were cut: %s" % log[-300:])


def wait_for(what, cond, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return check(cond(), what)


def test_poll(root):
    """--model-control-mode poll: new, changed, broken and removed model folders."""
    repo = os.path.join(root, "poll")
    digits = os.path.join(SRC, "demo", "digits_cnn.onnx")
    add_model(repo, "add", os.path.join(NODE, "test_add", "model.onnx"))
    add_model(repo, "d", digits, "max_batch_size: 4\n")
    srv = Server(repo, "--model-control-mode", "poll", "--repository-poll-secs", "1")
    check(srv.request("GET", "/v2/health/ready")[0] == 200, "poll: ready")
    config = lambda: srv.json("GET", "/v2/models/d/config")[1].get("max_batch_size")
    check(config() == 4, "poll: d loaded with max_batch_size 4")
    add_model(repo, "late", os.path.join(NODE, "test_equal_string", "model.onnx"))
    wait_for("poll: a new folder is loaded", lambda: srv.request("GET", "/v2/models/late/ready")[0] == 200)
    time.sleep(0.05)  # a new modification time, whatever the file system's granularity
    write(os.path.join(repo, "d", "config.pbtxt"), "max_batch_size: 8\n")
    wait_for("poll: a changed config is reloaded", lambda: config() == 8)
    write(os.path.join(repo, "d", "config.pbtxt"), "max_batch_size: eight\n")
    time.sleep(2.5)
    check(config() == 8 and srv.request("GET", "/v2/models/d/ready")[0] == 200,
          "poll: a broken config keeps the loaded version serving")
    shutil.rmtree(os.path.join(repo, "add"))
    wait_for("poll: a removed folder is unloaded", lambda: srv.request("GET", "/v2/models/add/ready")[0] == 404)
    st, idx = srv.json("POST", "/v2/repository/index")
    check(st == 200 and "add" not in [e["name"] for e in idx], "poll: the index forgets a removed folder: %s" % idx)
    expect_4xx(srv, "load in poll mode", 400, "POST", "/v2/repository/models/d/load", contains="explicit")
    rc, log = srv.stop()
    check(rc == 0, "poll: SIGTERM exits 0")


def main():
    root = tempfile.mkdtemp(prefix="kiln-serve-test.")
    try:
        if POLL:
            test_poll(root)
            return finish()
        repo = make_repo(root)
        _, images = read_npy(os.path.join(SRC, "demo", "test_images.npy"))
        _, logits = read_npy(os.path.join(SRC, "demo", "test_logits.npy"))
        # Mode none: every model loads at start; "broken" fails, so readiness is 503.
        srv = Server(repo, "--verbose")
        check(srv.request("GET", "/v2/health/live")[0] == 200, "mode none: live")
        st, r = infer_json(srv, "digits", [{"name": "image", "shape": [2, 1, 8, 8], "datatype": "FP32",
                                            "data": images[:128]}])
        check(st == 200, "mode none: infer")
        check(srv.request("GET", "/v2/health/ready")[0] == 503, "mode none with a broken model: not ready")
        check(srv.request("GET", "/v2/models/digits/ready")[0] == 200, "mode none: the good models are ready")
        expect_4xx(srv, "load in mode none", 400, "POST", "/v2/repository/models/add/load", contains="explicit")
        rc, log = srv.stop()
        check(rc == 0, "mode none: SIGTERM exits 0")
        check("response_cache" in log and "ignored" in log, "unknown config fields are reported: %s" % log[-800:])
        check(re.search(r"Z kiln serve: infer model=digits version=1 batch=2 status=200 queue_us=\d+ compute_us=\d+ "
                        r"total_us=\d+", log) and "GET /v2/health/live -> 200" in log,
              "--verbose: one structured line per request: %s" % log[-800:])
        # Mode explicit: every model but the broken one.
        names = [n for n in sorted(os.listdir(repo)) if n != "broken"]
        args = ["--model-control-mode", "explicit", "--max-request-bytes", str(1 << 20),
                "--max-json-bytes", str(1 << 16)]
        for n in names:
            args += ["--load-model", n]
        srv = Server(repo, *args)
        test_health_metadata(srv)
        test_json_infer(srv, images, logits)
        test_binary_infer(srv, images, logits)
        test_node_cases(srv)
        test_classification(srv, images, logits)
        test_batching(srv, images, logits)
        test_queue_limit_and_timeout(srv, images)
        test_priority(srv)
        test_preserve_ordering(srv)
        test_idle_wait(srv, images)
        test_client_gone(srv, images)
        test_bad_requests(srv, images)
        test_load_unload(srv, images)
        test_exactly_once_reload(srv, images, logits)
        test_fuzz(srv, images)
        test_drain(srv, images)
        test_exit_timeout(repo, images)
        test_exactly_once_sigterm(repo, images, logits)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    finish()


def finish():
    if FAILS:
        print("%d check(s) failed" % len(FAILS), file=sys.stderr)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
