# test_info.sh: `kiln info` on an ONNX node test model and on tests/data/good_add.onnx,
# whose every field is known (tests/data/make_bad_models.py wrote it).
. "$(dirname "$0")/common.sh"

expect_ok "$KILN" info "$NODE/test_relu/model.onnx"
out_has '^ir version: +7$' "info test_relu: ir version"
out_has '^producer: +backend-test$' "info test_relu: producer"
out_has '^graph: +test_relu$' "info test_relu: graph name"
out_has '^opsets: +ai\.onnx 14$' "info test_relu: opsets"
out_has '^inputs \(1\):$' "info test_relu: input count"
out_has '^  x +float32\[3,4,5\]$' "info test_relu: input x"
out_has '^  y +float32\[3,4,5\]$' "info test_relu: output y"
out_has '^  Relu +1$' "info test_relu: op count"
out_has '^parameters: +0 \(0 B\)$' "info test_relu: parameters"

# good_add declares its initializer W as a graph input too (a default value): kiln.h hides
# it from the inputs, but counts it as a parameter.
expect_ok "$KILN" info "$SRC/tests/data/good_add.onnx"
out_has '^producer: +make_bad_models\.py 1$' "info good_add: producer and version"
out_has '^model version: +42$' "info good_add: model version"
out_has '^graph: +good_add$' "info good_add: graph name"
out_has '^opsets: +ai\.onnx 13$' "info good_add: opsets"
out_has '^  purpose = kiln cli tests$' "info good_add: metadata"
out_has '^inputs \(1\):$' "info good_add: initializer excluded from inputs"
out_has '^  A +float32\[N,3\]$' "info good_add: symbolic dim"
grep -q '^  W ' "$TMP/out" && fail "info good_add lists initializer W as an input"
out_has '^  C +float32\[N,3\]$' "info good_add: output"
out_has '^parameters: +3 \(12 B\)$' "info good_add: parameters"

# Several op types: counts are sorted by op type. The demo model is committed (demo/).
# Parameters: conv 1->32, 32->32, 32->64 (3x3, with bias; BatchNorm folded in) and a
# 256->10 Gemm: 320 + 9248 + 18496 + 2570 = 30634 float32 = 122536 B.
expect_ok "$KILN" info "$SRC/demo/digits_cnn.onnx"
out_has '^  image +float32\[N,1,8,8\]$' "info digits: input"
out_has '^  label +int64\[N\]$' "info digits: label output"
out_has '^nodes \(11\):$' "info digits: node count"
ops=$(sed -n '/^nodes/,/^parameters/p' "$TMP/out" | awk 'NR > 1 && /^  / { print $1 }' | tr '\n' ' ')
[ "$ops" = "ArgMax Conv Flatten Gemm MaxPool Relu " ] || fail "info digits: op list '$ops'"
out_has '^  Conv +3$' "info digits: Conv count"
out_has '^  Relu +3$' "info digits: Relu count"
out_has '^parameters: +30634 \(119.7 KiB\)$' "info digits: parameters"

# Sequence and optional types print nested.
expect_ok "$KILN" info "$NODE/test_optional_get_element_optional_sequence/model.onnx"
out_has '^  optional_input +optional\(seq\(int32\[4\]\)\)$' "info: optional(seq(...)) input"
expect_ok "$KILN" info "$NODE/test_sequence_insert_at_back/model.onnx"
out_has '^  sequence +seq\(int64\)$' "info: seq input without shape"

expect_error 1 "nosuch\.onnx" "$KILN" info "$TMP/nosuch.onnx"
finish
