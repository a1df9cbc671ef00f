# serve_grpc.sh: `kiln serve`'s gRPC endpoint end to end: starts the server (--grpc-port 0)
# on a repository of the digits demo model and runs tests/serve/grpc_client.c against it
# (health, metadata, config, ModelInfer with raw and typed contents against ONNX Runtime's
# logits, NOT_FOUND / INVALID_ARGUMENT / RESOURCE_EXHAUSTED / UNIMPLEMENTED, batching of
# concurrent streams, RST_STREAM cancellation, grpc-timeout, mutated messages), then SIGTERM with calls in flight: they
# complete, GOAWAY arrives, the server exits 0.
# Run as `sh serve_grpc.sh KILN SOURCE_DIR GRPC_CLIENT` (tests/tests.cmake).
set -u
[ $# -ge 3 ] || { echo "usage: $0 KILN SOURCE_DIR GRPC_CLIENT" >&2; exit 2; }
KILN=$1
SRC=$2
CLIENT=$3
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kiln-grpc-test.XXXXXX")
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$TMP"' EXIT INT TERM
FAILS=0
fail() {
    echo "FAIL: $*" >&2
    FAILS=$((FAILS + 1))
}

"$KILN" serve --model-repository "$TMP" --grpc-port 70000 > /dev/null 2> "$TMP/usage"
rc=$?
[ "$rc" -eq 2 ] && grep -q -- '--grpc-port takes 0..65535' "$TMP/usage" || fail "--grpc-port 70000: exit $rc"

repo=$TMP/repo
mkdir -p "$repo/digits/1" "$repo/digits_slow/1"
cp "$SRC/demo/digits_cnn.onnx" "$repo/digits/1/model.onnx"
cp "$SRC/demo/digits_cnn.onnx" "$repo/digits_slow/1/model.onnx"
cat > "$repo/digits/config.pbtxt" <<'CFG'
name: "digits"
max_batch_size: 16
input [ { name: "image" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] } ]
dynamic_batching { preferred_batch_size: [ 16 ] max_queue_delay_microseconds: 100000 }
CFG
cat > "$repo/digits_slow/config.pbtxt" <<'CFG'
max_batch_size: 16
dynamic_batching { preferred_batch_size: [ 16 ] max_queue_delay_microseconds: 2000000 }
CFG

"$KILN" serve --model-repository "$repo" --http-port 0 --metrics-port 0 --grpc-port 0 --http-address 127.0.0.1 \
    --max-request-bytes 100000 > "$TMP/out" 2> "$TMP/err" &
PID=$!
i=0
while ! grep -q '^kiln serve: ready' "$TMP/out" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 "$PID" 2>/dev/null; then
        cat "$TMP/out" "$TMP/err" >&2
        echo "FAIL: the server did not start" >&2
        exit 1
    fi
    sleep 0.05
done
port=$(sed -n 's/^kiln serve: gRPC on .*:\([0-9][0-9]*\)$/\1/p' "$TMP/out")
[ -n "$port" ] || fail "no 'gRPC on' line: $(cat "$TMP/out")"

"$CLIENT" "$port" "$SRC" check || fail "grpc_client check"
kill -0 "$PID" 2>/dev/null || fail "the server died during the checks"
# The HTTP front's /metrics counts the gRPC calls: the concurrent streams ran batched.
mport=$(sed -n 's/^kiln serve: metrics on .*:\([0-9][0-9]*\)\/metrics$/\1/p' "$TMP/out")
python3 - "$mport" <<'PY' || fail "/metrics: digits ran no batch"
import re, sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=10).read().decode()
def value(name):
    m = re.search(r'^%s\{model="digits",version="1"\} (\d+)$' % name, text, re.M)
    return int(m.group(1)) if m else -1
inferences, execs = value("nv_inference_count"), value("nv_inference_exec_count")
print("/metrics digits: %d inferences in %d executions" % (inferences, execs))
sys.exit(0 if 0 < execs < inferences else 1)
PY
"$CLIENT" "$port" "$SRC" drain "$PID" || fail "grpc_client drain"
wait "$PID"
rc=$?
PID=
[ "$rc" -eq 0 ] || fail "the server exited $rc after SIGTERM"
grep -q 'kiln serve: stopped' "$TMP/err" || fail "no 'stopped' after SIGTERM"
if grep -q 'Sanitizer\|runtime error' "$TMP/err"; then
    cat "$TMP/err" >&2
    fail "sanitizer report"
fi
if [ "$FAILS" -ne 0 ]; then
    echo "server log:" >&2
    tail -20 "$TMP/err" >&2
    echo "$FAILS check(s) failed" >&2
    exit 1
fi
echo "all checks passed"
