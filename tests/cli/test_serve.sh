# test_serve.sh: `kiln serve` end to end (tests/cli/serve_client.py: a standard-library
# KServe v2 client against a temporary model repository), plus its usage errors.
. "$(dirname "$0")/common.sh"

expect_error 2 "--model-repository DIR is required" "$KILN" serve
expect_error 2 "unknown option 'model.onnx'" "$KILN" serve --model-repository "$TMP" model.onnx
expect_error 2 "--http-port takes 0..65535" "$KILN" serve --model-repository "$TMP" --http-port 70000
expect_error 2 "takes none, explicit or poll" "$KILN" serve --model-repository "$TMP" --model-control-mode sometimes
expect_error 2 "--load-model needs --model-control-mode explicit" "$KILN" serve --model-repository "$TMP" \
    --load-model m
expect_error 1 "is not a folder" "$KILN" serve --model-repository "$TMP/none" --http-port 0 --metrics-port 0
expect_ok "$KILN" help serve
out_has '--model-repository DIR' "kiln help serve"

python3 "$SRC/tests/cli/serve_client.py" "$KILN" "$SRC" "$(dirname "$NODE")" || fail "serve_client.py"
finish
