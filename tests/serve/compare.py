#!/usr/bin/env python3
"""compare.py: checks that `kiln serve` answers like `kiln run` (docs/serve.md, "Outputs equal
to kiln run"), model by model, through every front a client uses: HTTP with JSON tensors and
with Triton's binary tensor extension (standard-library http.client), HTTP through curl
(--curl: `curl --data-binary` with Inference-Header-Content-Length), and gRPC (--grpc-client:
tests/serve/grpc_client.c, a client built from the messages of Triton's grpc_service.proto).

    compare.py --kiln KILN --http-port P [--grpc-port G --grpc-client BIN] [--curl]
               [--work DIR] [--rtol R] [--atol A] [--seed N] NAME=MODEL_FILE[,INPUT_DIR] ...

For each model: its metadata and config come from the server; its inputs are INPUT_DIR's
input_0.npy, input_1.npy, ... (in the order of the metadata's inputs) or, without INPUT_DIR,
random values of the metadata's shapes (a dynamic batch dim gets 2 rows when max_batch_size
allows, 1 otherwise; other dynamic dims 3); `kiln run MODEL_FILE --level extended` on the same
inputs gives the reference outputs (.npy, in the order of the metadata's outputs, which is the
model's order when config.pbtxt leaves them out or lists them in that order). Each front's
outputs must have the reference's names, datatypes and shapes, integer and boolean values
equal, float values within atol + rtol * |reference| (default 0 and 0: the server runs the same
engine build as `kiln run --level extended`, so they are expected to be bit for bit the same;
a larger tolerance is for servers run with another thread count). JSON requests carry tensors
of up to 1M elements as JSON (larger ones, and FP16/BF16 which JSON cannot carry, as binary
data) and ask for outputs of up to 1M elements as JSON.

Prints one line per model and front; exits 1 when any differs, 2 on a usage error.
"""
import argparse
import http.client
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile

# KServe datatype -> (.npy descr, struct format, element size)
DTYPES = {
    "FP32": ("<f4", "f", 4), "FP64": ("<f8", "d", 8), "FP16": ("<f2", "e", 2),
    "INT8": ("|i1", "b", 1), "INT16": ("<i2", "h", 2), "INT32": ("<i4", "i", 4), "INT64": ("<i8", "q", 8),
    "UINT8": ("|u1", "B", 1), "UINT16": ("<u2", "H", 2), "UINT32": ("<u4", "I", 4), "UINT64": ("<u8", "Q", 8),
    "BOOL": ("|b1", "?", 1),
}
DESCR_TO_DT = {v[0]: k for k, v in DTYPES.items()}
DESCR_TO_DT.update({"<i1": "INT8", "<u1": "UINT8", "<b1": "BOOL", "|b1": "BOOL"})
JSON_LIMIT = 1 << 20


class Tensor:
    """A named tensor: KServe datatype, shape, and its little-endian bytes."""

    def __init__(self, name, datatype, shape, raw):
        self.name, self.datatype, self.shape, self.raw = name, datatype, list(shape), raw

    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def values(self):
        fmt, size = DTYPES[self.datatype][1], DTYPES[self.datatype][2]
        n = len(self.raw) // size
        return list(struct.unpack("<%d%s" % (n, fmt), self.raw))


def read_npy(path, name=""):
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise ValueError("%s: not a .npy file" % path)
    if data[6] == 1:
        hlen, off = struct.unpack("<H", data[8:10])[0], 10
    else:
        hlen, off = struct.unpack("<I", data[8:12])[0], 12
    header = data[off:off + hlen].decode("latin1")
    descr = header.split("'descr':")[1].split("'")[1]
    if "True" in header.split("'fortran_order':")[1].split(",")[0]:
        raise ValueError("%s: Fortran order" % path)
    shape_text = header.split("'shape':")[1].split("(")[1].split(")")[0]
    shape = [int(x) for x in shape_text.split(",") if x.strip()]
    if descr not in DESCR_TO_DT:
        raise ValueError("%s: dtype %s is not compared here" % (path, descr))
    return Tensor(name, DESCR_TO_DT[descr], shape, data[off + hlen:])


def write_npy(path, t):
    shape = "(%s)" % "".join("%d," % d for d in t.shape) if len(t.shape) != 1 else "(%d,)" % t.shape[0]
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (DTYPES[t.datatype][0], shape)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + t.raw)


def random_tensor(rng, name, datatype, shape):
    n = 1
    for d in shape:
        n *= d
    fmt = DTYPES[datatype][1]
    if datatype in ("FP32", "FP64", "FP16"):
        vals = [rng.uniform(-1.0, 1.0) for _ in range(n)]
    elif datatype == "BOOL":
        vals = [rng.random() < 0.5 for _ in range(n)]
    else:  # small non-negative integers: valid as indices, classes or counts in most models
        vals = [rng.randrange(0, 3) for _ in range(n)]
    return Tensor(name, datatype, shape, struct.pack("<%d%s" % (n, fmt), *vals))


class Http:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def get_json(self, path):
        st, _, body = self.request("GET", path)
        if st != 200:
            raise RuntimeError("GET %s: %d %s" % (path, st, body[:300]))
        return json.loads(body)


def parse_infer_response(headers, body):
    """Outputs of a KServe v2 response, JSON or binary, as {name: Tensor}."""
    hl = int(headers.get("inference-header-content-length", len(body)))
    doc = json.loads(body[:hl])
    off, out = hl, {}
    for o in doc["outputs"]:
        dt, shape = o["datatype"], o["shape"]
        size = o.get("parameters", {}).get("binary_data_size")
        if size is not None:
            raw = body[off:off + size]
            off += size
        else:
            fmt = DTYPES[dt][1]
            vals = o["data"]
            raw = struct.pack("<%d%s" % (len(vals), fmt), *vals)
        out[o["name"]] = Tensor(o["name"], dt, shape, raw)
    if off != len(body):
        raise RuntimeError("binary response: %d bytes after the outputs' binary_data_size add up to %d"
                           % (len(body), off))
    return out


def infer_body(inputs, outputs, binary_inputs, binary_outputs):
    """(body, headers) of a KServe v2 inference request."""
    ins, blobs = [], []
    for t in inputs:
        d = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        if binary_inputs or t.datatype == "FP16" or t.numel() > JSON_LIMIT:
            d["parameters"] = {"binary_data_size": len(t.raw)}
            blobs.append(t.raw)
        else:
            d["data"] = t.values()
        ins.append(d)
    outs = [{"name": o["name"], "parameters": {"binary_data": bool(binary_outputs or o["big"])}} for o in outputs]
    header = json.dumps({"id": "compare", "inputs": ins, "outputs": outs}).encode()
    if not blobs:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header)),
                                      "Content-Type": "application/octet-stream"}


def via_http(srv, model, inputs, outputs, binary):
    body, headers = infer_body(inputs, outputs, binary, binary)
    st, h, data = srv.request("POST", "/v2/models/%s/infer" % model, body, headers)
    if st != 200:
        raise RuntimeError("HTTP %d: %s" % (st, data[:500].decode(errors="replace")))
    return parse_infer_response(h, data)


def via_curl(port, model, inputs, outputs, work):
    body, headers = infer_body(inputs, outputs, True, True)
    req, resp, hdrs = (os.path.join(work, n) for n in ("curl-request", "curl-response", "curl-headers"))
    with open(req, "wb") as f:
        f.write(body)
    cmd = ["curl", "-sS", "-o", resp, "-D", hdrs, "-w", "%{http_code}", "-X", "POST", "--data-binary", "@" + req,
           "http://127.0.0.1:%d/v2/models/%s/infer" % (port, model)]
    for k, v in headers.items():
        cmd += ["-H", "%s: %s" % (k, v)]
    code = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    with open(resp, "rb") as f:
        data = f.read()
    if code.returncode != 0 or code.stdout.decode().strip() != "200":
        raise RuntimeError("curl: exit %d, HTTP %s: %s %s" % (code.returncode, code.stdout.decode(),
                                                             code.stderr.decode().strip(), data[:300]))
    h = {}
    with open(hdrs, "rb") as f:
        for line in f.read().decode("latin1").splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                h[k.strip().lower()] = v.strip()
    return parse_infer_response(h, data)


def via_grpc(client, port, model, inputs, work):
    """tests/serve/grpc_client.c's `infer` mode: a spec of raw input files in, raw outputs out."""
    spec = os.path.join(work, "grpc-inputs.txt")
    outdir = os.path.join(work, "grpc-out")
    os.makedirs(outdir, exist_ok=True)
    with open(spec, "w") as f:
        for i, t in enumerate(inputs):
            path = os.path.join(work, "grpc-in-%d.bin" % i)
            with open(path, "wb") as g:
                g.write(t.raw)
            f.write("%s %s %d %s %s\n" % (t.name, t.datatype, len(t.shape), " ".join(map(str, t.shape)), path))
    r = subprocess.run([client, str(port), "infer", model, spec, outdir], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, check=False)
    if r.returncode != 0:
        raise RuntimeError("grpc_client infer: exit %d: %s" % (r.returncode, r.stderr.decode().strip()))
    out = {}
    with open(os.path.join(outdir, "outputs.txt")) as f:
        for line in f:
            p = line.split()
            rank = int(p[2])
            shape, path = [int(x) for x in p[3:3 + rank]], p[3 + rank]
            with open(path, "rb") as g:
                out[p[0]] = Tensor(p[0], p[1], shape, g.read())
    return out


def compare(got, want, rtol, atol):
    """(ok, text): got against the reference tensor want."""
    if got.datatype != want.datatype:
        return False, "datatype %s, expected %s" % (got.datatype, want.datatype)
    if got.shape != want.shape:
        return False, "shape %s, expected %s" % (got.shape, want.shape)
    if got.raw == want.raw:
        return True, "bitwise equal"
    if got.datatype not in ("FP32", "FP64", "FP16"):
        return False, "values differ"
    worst, bad = 0.0, 0
    for a, b in zip(got.values(), want.values()):
        if math.isnan(a) and math.isnan(b):
            continue
        d = abs(a - b)
        if not d <= atol + rtol * abs(b):
            bad += 1
        if d > worst or math.isnan(d):
            worst = d
    return bad == 0, "max |diff| %.3g%s" % (worst, "" if not bad else ", %d values outside the tolerance" % bad)


def model_inputs(meta, cfg, input_dir, rng):
    inputs = []
    mbs = cfg.get("max_batch_size", 0)
    for i, spec in enumerate(meta["inputs"]):
        if input_dir:
            t = read_npy(os.path.join(input_dir, "input_%d.npy" % i), spec["name"])
            if t.datatype != spec["datatype"]:
                raise RuntimeError("%s/input_%d.npy is %s; the model's input '%s' is %s"
                                   % (input_dir, i, t.datatype, spec["name"], spec["datatype"]))
        else:
            if spec["datatype"] not in DTYPES:
                raise RuntimeError("input '%s' is %s: random values are made for numeric types only"
                                   % (spec["name"], spec["datatype"]))
            shape = [d if d >= 0 else (min(2, mbs) if (k == 0 and mbs > 0) else 3)
                     for k, d in enumerate(spec["shape"])]
            t = random_tensor(rng, spec["name"], spec["datatype"], shape)
        inputs.append(t)
    return inputs


def reference(kiln, model_file, inputs, n_outputs, work):
    refdir = os.path.join(work, "ref")
    os.makedirs(refdir, exist_ok=True)
    cmd = [kiln, "run", model_file, "--level", "extended", "--format", "npy", "--output-dir", refdir]
    for i, t in enumerate(inputs):
        path = os.path.join(work, "input_%d.npy" % i)
        write_npy(path, t)
        cmd += ["--input", "%s=%s" % (t.name, path)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if r.returncode != 0:
        raise RuntimeError("kiln run: exit %d: %s" % (r.returncode, r.stderr.decode().strip()))
    return [read_npy(os.path.join(refdir, "output_%d.npy" % k)) for k in range(n_outputs)]


def check_model(args, srv, name, model_file, input_dir, rng):
    """Returns the number of fronts that differed (or failed) for this model."""
    work = tempfile.mkdtemp(prefix="cmp-%s-" % name, dir=args.work)
    meta = srv.get_json("/v2/models/%s" % name)
    cfg = srv.get_json("/v2/models/%s/config" % name)
    inputs = model_inputs(meta, cfg, input_dir, rng)
    refs = reference(args.kiln, model_file, inputs, len(meta["outputs"]), work)
    outputs = []
    for k, o in enumerate(meta["outputs"]):
        refs[k].name = o["name"]
        outputs.append({"name": o["name"], "big": refs[k].numel() > JSON_LIMIT or o["datatype"] == "FP16"})
    fronts = [("http-json", lambda: via_http(srv, name, inputs, outputs, False)),
              ("http-binary", lambda: via_http(srv, name, inputs, outputs, True))]
    if args.curl:
        fronts.append(("curl", lambda: via_curl(args.http_port, name, inputs, outputs, work)))
    if args.grpc_client:
        fronts.append(("grpc", lambda: via_grpc(args.grpc_client, args.grpc_port, name, inputs, work)))
    failed = 0
    shapes = []  # "FP32[1x3]", repeats of the same folded as "24 x FP32[1x3]"
    for t in inputs:
        text = "%s[%s]" % (t.datatype, "x".join(map(str, t.shape)))
        if shapes and shapes[-1][1] == text:
            shapes[-1][0] += 1
        else:
            shapes.append([1, text])
    shapes = " ".join(text if n == 1 else "%d x %s" % (n, text) for n, text in shapes)
    for front, fn in fronts:
        try:
            got = fn()
        except (RuntimeError, ValueError, OSError, KeyError, struct.error) as e:
            print("%s %s: FAIL: %s" % (name, front, e))
            failed += 1
            continue
        notes, ok = [], True
        for ref in refs:
            if ref.name not in got:
                ok, note = False, "missing"
            else:
                ok_k, note = compare(got[ref.name], ref, args.rtol, args.atol)
                ok = ok and ok_k
            notes.append("%s %s" % (ref.name, note))
        print("%s %s: %s (inputs %s; %s)" % (name, front, "ok" if ok else "FAIL", shapes, "; ".join(notes)))
        failed += 0 if ok else 1
    return failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--grpc-port", type=int)
    ap.add_argument("--grpc-client")
    ap.add_argument("--curl", action="store_true")
    ap.add_argument("--work")
    ap.add_argument("--rtol", type=float, default=0.0)
    ap.add_argument("--atol", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("models", nargs="+", metavar="NAME=MODEL_FILE[,INPUT_DIR]")
    args = ap.parse_args()
    if args.grpc_client and not args.grpc_port:
        ap.error("--grpc-client needs --grpc-port")
    srv = Http(args.http_port)
    rng = random.Random(args.seed)
    failed = 0
    for spec in args.models:
        if "=" not in spec:
            ap.error("expected NAME=MODEL_FILE[,INPUT_DIR], got %r" % spec)
        name, rest = spec.split("=", 1)
        model_file, _, input_dir = rest.partition(",")
        try:
            failed += check_model(args, srv, name, model_file, input_dir or None, rng)
        except (RuntimeError, ValueError, OSError) as e:
            print("%s: FAIL: %s" % (name, e))
            failed += 1
    print("compare.py: %d model(s), %s" % (len(args.models), "all equal" if not failed else "%d failure(s)" % failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
