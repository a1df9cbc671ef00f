# test_serve_repo.sh: `kiln serve` on a repository of different models, with and without
# config.pbtxt (auto-completed, partial, full), answers like `kiln run` over every front:
# tests/serve/compare.py sends each model the same inputs over HTTP as JSON and as binary
# tensors (standard-library client), over HTTP with curl, and over gRPC (tests/serve/
# grpc_client.c, built from Triton's messages), and compares every output with `kiln run
# --level extended` on those inputs. Then the gRPC repository calls (index, statistics,
# unload, load) in explicit mode, and SIGTERM: exit 0, no sanitizer report.
#
# Models: the digits demo (full config with dynamic batching; no config; a partial one),
# tests/data's hand-made good_add (dynamic batch dim) and good_gemms (two instances), and
# ONNX node-test models (KILN_ONNX_TESTS) covering convolution, LSTM, layer norm, gather,
# where, split (three outputs), argmax (INT64 out), cast to FP64, boolean and, matmul, gemm.
. "$(dirname "$0")/common.sh"

GRPC_CLIENT=$(dirname "$KILN")/test_serve_grpc_client
repo=$TMP/repo
add() { # add NAME MODEL_FILE [CONFIG_TEXT]
    mkdir -p "$repo/$1/1"
    cp "$2" "$repo/$1/1/model.onnx"
    [ $# -lt 3 ] || printf '%s\n' "$3" > "$repo/$1/config.pbtxt"
}
add digits "$SRC/demo/digits_cnn.onnx" 'name: "digits"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "image" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] } ]
dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 2000 }
instance_group [ { count: 1 kind: KIND_CPU } ]'
add digits_auto "$SRC/demo/digits_cnn.onnx"
add digits_partial "$SRC/demo/digits_cnn.onnx" 'max_batch_size: 0'
add add_dyn "$SRC/tests/data/good_add.onnx"
add gemms "$SRC/tests/data/good_gemms.onnx" 'backend: "onnxruntime"
instance_group [ { count: 2 } ]
model_warmup [ { name: "ignored" } ]'
specs="digits=$repo/digits/1/model.onnx digits_auto=$repo/digits_auto/1/model.onnx
digits_partial=$repo/digits_partial/1/model.onnx add_dyn=$repo/add_dyn/1/model.onnx
gemms=$repo/gemms/1/model.onnx"
for t in conv_with_strides_padding lstm_defaults layer_normalization_4d_axis1 gather_0 where_example \
         split_equal_parts_1d_opset18 argmax_keepdims_random cast_FLOAT_to_DOUBLE and2d matmul_4d \
         gemm_all_attributes softmax_axis_1; do
    [ -f "$NODE/test_$t/model.onnx" ] || { fail "missing ONNX node test test_$t"; continue; }
    add "$t" "$NODE/test_$t/model.onnx"
    specs="$specs $t=$repo/$t/1/model.onnx"
done
# One node-test model with a config of its own: not batched, two instances.
add relu_cfg "$NODE/test_relu/model.onnx" 'platform: "onnxruntime_onnx" max_batch_size: 0
instance_group { count: 2 kind: KIND_CPU }'
specs="$specs relu_cfg=$repo/relu_cfg/1/model.onnx"

"$KILN" serve --model-repository "$repo" --http-port 0 --grpc-port 0 --metrics-port 0 --http-address 127.0.0.1 \
    --model-control-mode explicit --load-model '*' > "$TMP/server.out" 2> "$TMP/server.err" &
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
grpc=$(sed -n 's/^kiln serve: gRPC on .*:\([0-9][0-9]*\)$/\1/p' "$TMP/server.out")
grep -q "field 'model_warmup' is not used by kiln serve; ignored" "$TMP/server.err" ||
    fail "the unknown config field was not reported"

grpc_args=
if [ -n "$grpc" ]; then
    [ -x "$GRPC_CLIENT" ] || fail "the server speaks gRPC but $GRPC_CLIENT is missing"
    grpc_args="--grpc-port $grpc --grpc-client $GRPC_CLIENT"
else
    echo "kiln serve built without gRPC: HTTP only" >&2
fi
mkdir -p "$TMP/work"
# shellcheck disable=SC2086 # word splitting of the argument lists is intended
python3 "$SRC/tests/serve/compare.py" --kiln "$KILN" --http-port "$http" $grpc_args --curl --work "$TMP/work" \
    $specs > "$TMP/compare.out" 2>&1 || fail "compare.py: outputs differ from kiln run"
cat "$TMP/compare.out"
if [ -n "$grpc" ] && [ -x "$GRPC_CLIENT" ]; then
    "$GRPC_CLIENT" "$grpc" repo digits_auto || fail "gRPC repository calls"
fi
kill -TERM "$pid"
wait "$pid"
rc=$?
[ "$rc" -eq 0 ] || fail "the server exited $rc after SIGTERM"
if grep -q 'Sanitizer\|runtime error' "$TMP/server.err"; then
    cat "$TMP/server.err" >&2
    fail "sanitizer report in the server's log"
fi
finish
