# test_serve_curl.sh: `kiln serve`'s HTTP endpoints driven by curl, as a shell user or a
# probe would: health, server and model metadata, readiness, configuration, repository
# index/load/unload (explicit mode), statistics, inference with JSON and with Triton's binary
# tensor extension (`curl --data-binary` with Inference-Header-Content-Length), the
# classification extension, and error bodies with their status codes. Inference outputs are
# compared with `kiln run --level extended` on the same images (bit for bit). python3 only
# writes request bodies and reads JSON answers; every request goes through curl.
. "$(dirname "$0")/common.sh"

command -v curl > /dev/null || { fail "curl is not installed (scripts/install-deps.sh installs it)"; finish; }
repo=$TMP/repo
mkdir -p "$repo/digits/1" "$repo/digits_b/1"
cp "$SRC/demo/digits_cnn.onnx" "$repo/digits/1/model.onnx"
cp "$SRC/demo/digits_cnn.onnx" "$repo/digits_b/1/model.onnx"
cat > "$repo/digits/config.pbtxt" <<'CFG'
max_batch_size: 16
dynamic_batching { max_queue_delay_microseconds: 1000 }
CFG
mkdir "$repo/.hidden" "$repo/not a model" # folders whose names are no model names: not listed

"$KILN" serve --model-repository "$repo" --http-port 0 --grpc-port 0 --metrics-port 0 --http-address 127.0.0.1 \
    --model-control-mode explicit --load-model digits --load-model digits_b --max-request-bytes 200000 \
    > "$TMP/server.out" 2> "$TMP/server.err" &
pid=$!
i=0
while ! grep -q '^kiln serve: ready' "$TMP/server.out" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 600 ] || ! kill -0 "$pid" 2>/dev/null; then
        cat "$TMP/server.out" "$TMP/server.err" >&2
        fail "the server did not start"
        kill "$pid" 2>/dev/null
        finish
    fi
    sleep 0.05
done
http=$(sed -n 's/^kiln serve: HTTP on .*:\([0-9][0-9]*\)$/\1/p' "$TMP/server.out")
base=http://127.0.0.1:$http

# req METHOD PATH [CURL_ARGS...]: the answer's status in $CODE, body in $TMP/body, headers
# in $TMP/headers.
req() {
    m=$1
    p=$2
    shift 2
    CODE=$(curl -sS -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' -X "$m" "$@" "$base$p") || CODE="curl failed"
}
# expect CODE WHAT: the last answer had status CODE.
expect() {
    [ "$CODE" = "$1" ] || fail "$2: HTTP $CODE, expected $1: $(head -c 300 "$TMP/body")"
}
# json PY_EXPR WHAT: the last answer's JSON body (as d) satisfies the Python expression.
json() {
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if eval("(" + sys.argv[2] + ")") else 1)' \
        "$TMP/body" "$1" 2> /dev/null || fail "$2: $(head -c 400 "$TMP/body")"
}
# error CODE PATTERN WHAT: the last answer is CODE with {"error": "<one line matching PATTERN>"}.
error() {
    expect "$1" "$3"
    python3 -c '
import json, re, sys
d = json.load(open(sys.argv[1]))
ok = list(d) == ["error"] and isinstance(d["error"], str) and "\n" not in d["error"] and re.search(sys.argv[2], d["error"])
sys.exit(0 if ok else 1)' "$TMP/body" "$2" 2> /dev/null || fail "$3: body $(head -c 300 "$TMP/body")"
    grep -qi '^content-type: application/json' "$TMP/headers" || fail "$3: the error is not application/json"
}

# ---- health, metadata, configuration
req GET /v2/health/live
expect 200 "live"
req GET /v2/health/ready
expect 200 "ready"
req GET /v2
expect 200 "server metadata"
json 'd["name"] == "kiln" and {"binary_tensor_data", "classification", "model_repository", "statistics",
     "model_configuration"} <= set(d["extensions"])' "server metadata: name and extensions"
req GET /v2/models/digits
expect 200 "model metadata"
json 'd["name"] == "digits" and d["versions"] == ["1"] and d["inputs"] == [{"name": "image", "datatype": "FP32",
     "shape": [-1, 1, 8, 8]}] and [o["name"] for o in d["outputs"]] == ["logits", "label"]' "model metadata"
req GET /v2/models/digits/versions/1/ready
expect 200 "model ready"
req GET /v2/models/digits/config
expect 200 "model config"
json 'd["max_batch_size"] == 16 and d["dynamic_batching"]["max_queue_delay_microseconds"] == 1000 and
     d["input"][0]["dims"] == [1, 8, 8] and d["dynamic_batching"]["priority_levels"] == 0' "model config"
req GET /v2/models/digits_b/config
json 'd["max_batch_size"] == 4 and "dynamic_batching" in d' "auto-completed config (no config.pbtxt)"

# ---- inference: the reference from kiln run, then JSON and binary requests through curl
"$KILN" run "$SRC/demo/digits_cnn.onnx" --level extended --input "image=$SRC/demo/test_images.npy" \
    --format npy --output-dir "$TMP/ref" > /dev/null 2>&1 || fail "kiln run on the demo images"
python3 - "$SRC/demo/test_images.npy" "$TMP" <<'PY' || fail "writing the request bodies"
import json, struct, sys
data = open(sys.argv[1], "rb").read()
hlen = struct.unpack("<H", data[8:10])[0]
raw = data[10 + hlen:]
images = list(struct.unpack("<%df" % (len(raw) // 4), raw))
inp = {"name": "image", "datatype": "FP32", "shape": [16, 1, 8, 8]}
json.dump({"id": "json-1", "inputs": [dict(inp, data=images)]}, open(sys.argv[2] + "/req.json", "w"))
header = json.dumps({"id": "bin-1", "inputs": [dict(inp, parameters={"binary_data_size": len(raw)})],
                     "outputs": [{"name": "logits", "parameters": {"binary_data": True}},
                                 {"name": "label", "parameters": {"binary_data": True}}]}).encode()
open(sys.argv[2] + "/req.bin", "wb").write(header + raw)
open(sys.argv[2] + "/req.bin.len", "w").write(str(len(header)))
json.dump({"inputs": [dict(inp, data=images)], "outputs": [{"name": "logits", "parameters": {"classification": 2}}]},
          open(sys.argv[2] + "/req.class.json", "w"))
PY
# outputs_equal RESPONSE_HEADERS RESPONSE_BODY: the response's logits and label are kiln run's.
outputs_equal() {
    python3 - "$1" "$2" "$TMP/ref" <<'PY'
import json, struct, sys
def npy(path):
    d = open(path, "rb").read()
    h = struct.unpack("<H", d[8:10])[0]
    return d[10 + h:]
headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
           for l in open(sys.argv[1], encoding="latin1") if ":" in l}
body = open(sys.argv[2], "rb").read()
hl = int(headers.get("inference-header-content-length", len(body)))
doc = json.loads(body[:hl])
off, ok = hl, True
fmt = {"FP32": "f", "INT64": "q"}
for k, o in enumerate(doc["outputs"]):
    want = npy("%s/output_%d.npy" % (sys.argv[3], k))
    size = o.get("parameters", {}).get("binary_data_size")
    if size is not None:
        got = body[off:off + size]
        off += size
    else:
        got = struct.pack("<%d%s" % (len(o["data"]), fmt[o["datatype"]]), *o["data"])
    if got != want or o["shape"][0] != 16:
        print("output %s differs from kiln run's" % o["name"])
        ok = False
sys.exit(0 if ok and off == len(body) and [o["name"] for o in doc["outputs"]] == ["logits", "label"] else 1)
PY
}
req POST /v2/models/digits/infer -H 'Content-Type: application/json' --data-binary "@$TMP/req.json"
expect 200 "JSON inference"
json 'd["id"] == "json-1" and d["model_name"] == "digits" and d["model_version"] == "1"' "JSON inference: id echoed"
outputs_equal "$TMP/headers" "$TMP/body" || fail "JSON inference: outputs differ from kiln run"
req POST /v2/models/digits/infer -H 'Content-Type: application/octet-stream' \
    -H "Inference-Header-Content-Length: $(cat "$TMP/req.bin.len")" --data-binary "@$TMP/req.bin"
expect 200 "binary inference"
grep -qi '^inference-header-content-length: [0-9]' "$TMP/headers" ||
    fail "binary inference: no Inference-Header-Content-Length in the response"
outputs_equal "$TMP/headers" "$TMP/body" || fail "binary inference: outputs differ from kiln run"
req POST /v2/models/digits_b/versions/1/infer --data-binary "@$TMP/req.json"
error 400 "batch-size 16 .* out of range \\[1, 4\\]" "16 rows on digits_b (max_batch_size 4)"
# Classification: the two largest logits per row, "<value>:<index>", against kiln run's logits.
req POST /v2/models/digits/infer --data-binary "@$TMP/req.class.json"
expect 200 "classification"
python3 - "$TMP/body" "$TMP/ref/output_0.npy" <<'PY' || fail "classification: $(head -c 300 "$TMP/body")"
import json, struct, sys
d = json.load(open(sys.argv[1]))["outputs"][0]
raw = open(sys.argv[2], "rb").read()
logits = struct.unpack("<160f", raw[10 + struct.unpack("<H", raw[8:10])[0]:])
ok = d["datatype"] == "BYTES" and d["shape"] == [16, 2]
for r in range(16):
    row = logits[r * 10:(r + 1) * 10]
    best = sorted(range(10), key=lambda i: -row[i])[:2]
    got = [int(s.split(":")[1]) for s in d["data"][r * 2:r * 2 + 2]]
    ok = ok and got == best and abs(float(d["data"][r * 2].split(":")[0]) - row[best[0]]) < 1e-5
sys.exit(0 if ok else 1)
PY

# ---- statistics, repository index, unload and load
req GET /v2/models/digits/stats
expect 200 "statistics"
json 'd["model_stats"][0]["name"] == "digits" and d["model_stats"][0]["inference_count"] >= 32 and
     d["model_stats"][0]["inference_stats"]["success"]["count"] >= 3' "statistics count the inferences"
req GET /v2/models/stats
json 'sorted(s["name"] for s in d["model_stats"]) == ["digits", "digits_b"]' "statistics of every model"
req POST /v2/repository/index
expect 200 "repository index"
json 'sorted((m["name"], m.get("state")) for m in d) == [("digits", "READY"), ("digits_b", "READY")]' \
    "repository index: both models READY, no other folder"
req POST /v2/repository/models/digits_b/unload
expect 200 "unload"
req GET /v2/models/digits_b/ready
[ "$CODE" = 503 ] || [ "$CODE" = 400 ] || fail "ready after the unload: HTTP $CODE"
req POST /v2/repository/index
json '[m.get("state") for m in d if m["name"] == "digits_b"] == ["UNAVAILABLE"]' "index after the unload"
req POST /v2/models/digits_b/infer --data-binary "@$TMP/req.json"
error 503 "not loaded|unavailable|UNAVAILABLE" "inference on an unloaded model"
req POST /v2/repository/models/digits_b/load
expect 200 "load"
req GET /v2/models/digits_b/ready
expect 200 "ready after the load"
req POST /v2/repository/models/no_such_model/load
[ "${CODE#4}" != "$CODE" ] || fail "loading a model the repository lacks: HTTP $CODE, expected 4xx"
error "$CODE" "no_such_model" "loading a model the repository lacks"

# ---- errors: Triton's status codes, {"error": "..."} bodies
req GET /v2/models/nope
error 404 "nope" "unknown model"
req GET /v2/models/digits/versions/7
error 404 "version" "unknown version"
req GET /v2/no/such/path
expect 404 "unknown path"
req GET /v2/models/digits/infer
expect 405 "GET on infer"
req POST /v2/models/digits/infer --data-binary '{"inputs": [ {'
error 400 "malformed JSON.*line 1" "malformed JSON"
req POST /v2/models/digits/infer --data-binary \
    '{"inputs":[{"name":"image","datatype":"INT32","shape":[1,1,8,8],"data":[0]}]}'
error 400 "INT32|datatype" "wrong datatype"
req POST /v2/models/digits/infer --data-binary \
    '{"inputs":[{"name":"image","datatype":"FP32","shape":[1,1,8,7],"data":[0]}]}'
error 400 "shape|dims" "wrong shape"
req POST /v2/models/digits/infer --data-binary '{"inputs":[{"name":"nope","datatype":"FP32","shape":[1],"data":[0]}]}'
error 400 "nope" "unknown input"
req POST /v2/models/digits/infer --data-binary \
    '{"parameters":{"priority":"high"},"inputs":[{"name":"image","datatype":"FP32","shape":[1,1,8,8],"data":[0]}]}'
error 400 "priority" "a priority that is not an integer"
req POST /v2/models/digits/infer -H 'Inference-Header-Content-Length: 99999' --data-binary '{"inputs":[]}'
error 400 "Inference-Header-Content-Length" "a JSON length past the body"
head -c 300000 /dev/zero > "$TMP/big"
# With "Expect: 100-continue" (as HTTP clients send for large bodies) curl waits for the
# server's answer before sending the body: the server answers 413 from the headers and
# closes, and without it curl, still sending, could meet the closed socket (EPIPE) before
# reading the answer (seen once in CI under ASan's timing).
req POST /v2/models/digits/infer -H 'Expect: 100-continue' --data-binary "@$TMP/big"
expect 413 "a body over --max-request-bytes"
req POST /v2/models/digits/infer -H 'Content-Encoding: gzip' --data-binary "@$TMP/req.json"
error 415 "Content-Encoding|compress" "a compressed body"
req POST '/v2/models/..%2F..%2Fetc/infer' --data-binary '{}'
[ "${CODE#4}" != "$CODE" ] || fail "a model name with '/': HTTP $CODE, expected 4xx"
req GET /v2/health/live
expect 200 "live after the bad requests"

kill -TERM "$pid"
wait "$pid"
rc=$?
[ "$rc" -eq 0 ] || fail "the server exited $rc after SIGTERM"
if grep -q 'Sanitizer\|runtime error' "$TMP/server.err"; then
    cat "$TMP/server.err" >&2
    fail "sanitizer report in the server's log"
fi
finish
