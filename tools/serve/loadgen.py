"""loadgen.py: a closed-loop load generator for `kiln serve` (or any KServe v2 HTTP server),
standard library only.

    python3 tools/serve/loadgen.py --url http://127.0.0.1:8000 --model digits \
        --input image:FP32:1x1x8x8 [--concurrency 32] [--duration 10] [--json]

Each of --concurrency threads keeps one HTTP/1.1 connection and sends the next request as
soon as the previous answer arrives (binary tensor data, random values; outputs requested
in binary). Prints requests, errors, throughput (requests/s and rows/s) and latency
percentiles (p50, p90, p99, max). Python's threads share one core for the client side, so
for small models the client may be the limit: compare settings at the same concurrency, and
check with --concurrency 1 how fast one client alone goes.
"""
import argparse
import http.client
import json
import random
import struct
import sys
import threading
import time
import urllib.parse

SIZES = {"FP32": ("<f", 4), "FP64": ("<d", 8), "INT64": ("<q", 8), "INT32": ("<i", 4), "UINT8": ("<B", 1)}


def parse_input(spec):
    name, dtype, shape = spec.split(":")
    dims = [int(d) for d in shape.split("x")]
    if dtype not in SIZES:
        raise SystemExit("loadgen: datatype %s is not supported here (%s)" % (dtype, ", ".join(SIZES)))
    n = 1
    for d in dims:
        n *= d
    fmt, _ = SIZES[dtype]
    rnd = random.Random(1)
    if dtype.startswith("FP"):
        data = struct.pack("<%d%s" % (n, fmt[1]), *[rnd.random() for _ in range(n)])
    else:
        data = struct.pack("<%d%s" % (n, fmt[1]), *[rnd.randrange(100) for _ in range(n)])
    return {"name": name, "datatype": dtype, "shape": dims, "parameters": {"binary_data_size": len(data)}}, data


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", action="append", required=True, help="NAME:DATATYPE:D0xD1x...")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    inputs = [parse_input(s) for s in a.input]
    header = json.dumps({"inputs": [i for i, _ in inputs], "parameters": {"binary_data_output": True}}).encode()
    body = header + b"".join(d for _, d in inputs)
    headers = {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}
    rows = inputs[0][0]["shape"][0]
    path = "/v2/models/%s/infer" % a.model
    lat, errors, lock = [], [0], threading.Lock()
    start = time.time() + a.warmup
    stop = start + a.duration

    def client():
        c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
        mine, errs = [], 0
        while True:
            t0 = time.time()
            if t0 >= stop:
                break
            try:
                c.request("POST", path, body, headers)
                r = c.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                c.close()
                c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
            t1 = time.time()
            if t0 >= start:
                if ok:
                    mine.append(t1 - t0)
                else:
                    errs += 1
        c.close()
        with lock:
            lat.extend(mine)
            errors[0] += errs

    threads = [threading.Thread(target=client) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
    res = {"model": a.model, "concurrency": a.concurrency, "requests": len(lat), "errors": errors[0],
           "req_per_s": len(lat) / a.duration, "rows_per_s": len(lat) * rows / a.duration,
           "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": lat[-1] * 1000 if lat else None}
    if a.json:
        print(json.dumps(res))
    else:
        print("%(model)s c=%(concurrency)d: %(requests)d requests, %(errors)d errors, %(req_per_s).1f req/s, "
              "%(rows_per_s).1f rows/s, p50 %(p50_ms).2f ms, p90 %(p90_ms).2f ms, p99 %(p99_ms).2f ms" % res)
    return 1 if errors[0] else 0


if __name__ == "__main__":
    sys.exit(main())
