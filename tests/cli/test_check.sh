# test_check.sh: `kiln check` on valid models ("ok", exit 0) and on broken ones: files that
# are missing, empty, truncated or not ONNX at all, and the hand-made bad models of
# tests/data/ (a cycle, a short initializer, an undefined node input). Each failure must be
# exit 1 with a message naming the problem.
. "$(dirname "$0")/common.sh"
DATA=$SRC/tests/data

for m in "$NODE/test_relu/model.onnx" "$NODE/test_add_bcast/model.onnx" \
    "$NODE/test_conv_with_strides_padding/model.onnx" "$DATA/good_add.onnx"; do
    expect_ok "$KILN" check "$m"
    [ "$(cat "$TMP/out")" = "ok" ] || fail "check $m: output is not exactly 'ok'"
done

# Several models: one line each, prefixed by the path.
expect_ok "$KILN" check "$NODE/test_relu/model.onnx" "$DATA/good_add.onnx"
out_has "^$NODE/test_relu/model.onnx: ok$" "check of two models (first)"
out_has "^$DATA/good_add.onnx: ok$" "check of two models (second)"

expect_error 1 "cannot open .*nosuch\.onnx" "$KILN" check "$TMP/nosuch.onnx"

: >"$TMP/empty.onnx"
expect_error 1 "empty" "$KILN" check "$TMP/empty.onnx"

# A real model cut short: the last field runs past the end of the file.
head -c 150 "$NODE/test_conv_with_strides_padding/model.onnx" >"$TMP/truncated.onnx"
expect_error 1 "truncated\.onnx.*(truncated|past the end)" "$KILN" check "$TMP/truncated.onnx"

printf 'This is a text file, not an ONNX model.\n' >"$TMP/text.onnx"
expect_error 1 "text\.onnx.*not an ONNX model" "$KILN" check "$TMP/text.onnx"

# The cycle is reported (stdout) naming both nodes; the summary goes to stderr.
expect_error 1 "bad_cycle\.onnx: 1 problem found" "$KILN" check "$DATA/bad_cycle.onnx"
out_has "cycle" "check bad_cycle"
out_has "'add'" "check bad_cycle names node add"
out_has "'relu'" "check bad_cycle names node relu"

expect_error 1 "bad_missing_input\.onnx: 1 problem found" "$KILN" check "$DATA/bad_missing_input.onnx"
out_has "'nope' is not defined" "check bad_missing_input"

# The short initializer is caught while loading: the load error is the message.
expect_error 1 "initializer 'W' has 4 float32 values; its dims \[2,3\] need 6" \
    "$KILN" check "$DATA/bad_short_init.onnx"

write_npy "$TMP/x2.npy" "<f4" "(2,)" 8
# An opset import newer than kiln knows is refused while loading (KILN_E_UNSUPPORTED), naming
# the version imported and the newest kiln knows; check, info and run all say so.
OPSET_MSG="bad_opset_999\.onnx' imports opset ai\.onnx 999; kiln knows ai\.onnx up to [0-9]+$"
expect_error 1 "$OPSET_MSG" "$KILN" check "$DATA/bad_opset_999.onnx"
expect_error 1 "$OPSET_MSG" "$KILN" info "$DATA/bad_opset_999.onnx"
expect_error 1 "$OPSET_MSG" "$KILN" run "$DATA/bad_opset_999.onnx" --input "X=$TMP/x2.npy"

# One bad model among good ones: every model is still checked, and the exit status is 1.
run "$KILN" check "$DATA/bad_cycle.onnx" "$DATA/good_add.onnx"
[ "$RC" -eq 1 ] || fail "check of a bad and a good model exits $RC, expected 1"
out_has "good_add\.onnx: ok$" "check continues after a bad model"

# Running a model that fails the check is refused too, before anything runs.
write_npy "$TMP/x.npy" "<f4" "(2,)" 8
expect_error 1 "cycle" "$KILN" run "$DATA/bad_cycle.onnx" --input "X=$TMP/x.npy"
finish
