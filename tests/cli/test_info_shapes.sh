# test_info_shapes.sh: `kiln info --shapes`: every value of the main graph with its inferred
# type, inputs and initializers first, symbolic dims carried through the network, and
# data-dependent sizes marked.
. "$(dirname "$0")/common.sh"

# The demo CNN (demo/digits_cnn.onnx): a symbolic batch N through Conv, MaxPool, Flatten and
# Gemm; ArgMax's output keeps N.
expect_ok "$KILN" info --shapes "$SRC/demo/digits_cnn.onnx"
out_has '^values \(20\):$' "info --shapes digits: value count"
out_has '^  image +float32\[N,1,8,8\]$' "info --shapes digits: input first"
first=$(sed -n '/^values/{n;p;}' "$TMP/out" | awk '{print $1}')
[ "$first" = "image" ] || fail "info --shapes digits: first value is '$first'"
out_has '^  classifier\.weight +float32\[10,256\]$' "info --shapes digits: initializer"
out_has '^  /features/features\.6/MaxPool_output_0 +float32\[N,32,4,4\]$' "info --shapes digits: MaxPool"
out_has '^  /Flatten_output_0 +float32\[N,256\]$' "info --shapes digits: Flatten"
out_has '^  logits +float32\[N,10\]$' "info --shapes digits: Gemm"
out_has '^  label +int64\[N\]$' "info --shapes digits: ArgMax"
last=$(tail -n 1 "$TMP/out" | awk '{print $1}')
[ "$last" = "label" ] || fail "info --shapes digits: last value is '$last' (topological order)"

# Without --shapes there is no value table.
expect_ok "$KILN" info "$SRC/demo/digits_cnn.onnx"
grep -q '^values' "$TMP/out" && fail "info without --shapes prints values"

# A data-dependent size gets a fresh symbol and the mark.
expect_ok "$KILN" info --shapes "$NODE/test_nonzero_example/model.onnx"
out_has '^  result +int64\[2,NonZero_1\] \(data-dependent\)$' "info --shapes: NonZero"

# The option may come after the model; unknown options are refused.
expect_ok "$KILN" info "$SRC/tests/data/good_add.onnx" --shapes
out_has '^  C +float32\[N,3\]$' "info --shapes good_add: broadcast keeps N"
expect_error 2 "unknown option '--shape'" "$KILN" info --shape "$SRC/tests/data/good_add.onnx"
finish
