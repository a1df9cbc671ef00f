# test_cli.sh: the example plugin through the command line: `kiln --plugin libswish.so run`
# gives the float64 reference (rounded to float32, within kiln compare's --rtol 1e-6
# --atol 1e-6); without the plugin the model is refused at load with one line naming the
# node, op and domain; --plugin's own errors; kiln --help mentions it.
#
#     sh test_cli.sh KILN SOURCE_DIR ONNX_TEST_DATA_DIR LIBSWISH TEST_SWISH
# (examples/examples.cmake). TEST_SWISH --write DIR writes the model and data.
. "$(dirname "$0")/../../tests/cli/common.sh"
[ $# -ge 5 ] || { echo "usage: $0 KILN SOURCE_DIR ONNX_TEST_DATA_DIR LIBSWISH TEST_SWISH" >&2; exit 2; }
LIB=$4
GEN=$5

if ! "$GEN" --write "$TMP" >"$TMP/gen.log" 2>&1; then
    cat "$TMP/gen.log" >&2
    fail "cannot write the model and data"
    finish
fi
M=$TMP/swish.onnx

# With the plugin: run, then compare with the reference.
expect_ok "$KILN" --plugin "$LIB" run "$M" --input "x=$TMP/x.pb" --output-dir "$TMP/outputs"
expect_ok "$KILN" compare "$TMP/outputs/output_0.pb" "$TMP/y_ref.pb" --rtol 1e-6 --atol 1e-6
# --plugin=LIB, repeated (the second load of one library does nothing), and printed outputs.
expect_ok "$KILN" --plugin="$LIB" --plugin "$LIB" run "$M" --input "x=$TMP/x.pb"
out_has "^y: float32\[3,5\]$" "kiln run's printed output"
# check and info know the op; info --shapes keeps the symbolic batch size through Swish.
expect_ok "$KILN" --plugin "$LIB" check "$M"
out_has "^ok$" "kiln check"
expect_ok "$KILN" --plugin "$LIB" info --shapes "$M"
out_has "^  h +float32\[N,5\]$" "kiln info --shapes"

# Without it: refused at load, for run, check and info alike.
for cmd in run check info; do
    expect_error 1 "node 'swish0' \(Swish\): op 'Swish' of domain 'com.example' is not known to kiln and no loaded plugin declares it \(kiln --plugin LIB.so\)" \
        "$KILN" "$cmd" "$M"
done

# --plugin's own errors.
expect_error 1 "plugin '$TMP/nosuch.so': cannot open: No such file" "$KILN" --plugin "$TMP/nosuch.so" check "$M"
printf 'not a library' >"$TMP/garbage.so"
expect_error 1 "plugin '$TMP/garbage.so': cannot load: " "$KILN" --plugin "$TMP/garbage.so" check "$M"
expect_error 2 "--plugin needs a library" "$KILN" --plugin

# The option is documented in kiln --help.
expect_ok "$KILN" --help
out_has "--plugin LIB.so" "kiln --help"

finish
