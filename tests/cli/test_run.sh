# test_run.sh: `kiln run` end to end on ONNX node test cases: inputs from a test data set
# folder (--input-dir) or by name (--input, .pb or .npy), outputs written (--output-dir,
# pb or npy) and compared with the expected outputs by `kiln compare`, or printed.
. "$(dirname "$0")/common.sh"

# run_case CASE: runs data set 0 of a node test case and compares every output.
run_case() {
    dir=$NODE/$1/test_data_set_0
    out=$TMP/$1
    expect_ok "$KILN" run "$NODE/$1/model.onnx" --input-dir "$dir" --output-dir "$out"
    k=0
    while [ -f "$dir/output_$k.pb" ]; do
        if [ ! -f "$out/output_$k.pb" ]; then
            fail "$1: output_$k.pb was not written"
        else
            run "$KILN" compare "$out/output_$k.pb" "$dir/output_$k.pb"
            [ "$RC" -eq 0 ] || fail "$1: output $k differs: $(cat "$TMP/out" "$TMP/err")"
        fi
        k=$((k + 1))
    done
    [ "$k" -gt 0 ] || fail "$1: no expected outputs found in $dir"
    [ -f "$out/output_$k.pb" ] && fail "$1: more outputs written than expected"
}

for c in test_relu test_add_bcast test_matmul_2d test_argmax_default_axis_example \
    test_concat_2d_axis_0 test_sequence_insert_at_back; do
    run_case "$c"
done

# The output really is the computed one: compare tells it apart from the input.
run "$KILN" compare "$TMP/test_relu/output_0.pb" "$NODE/test_relu/test_data_set_0/input_0.pb"
[ "$RC" -eq 1 ] || fail "compare of relu output with its input exits $RC, expected 1"

# --input by name with a .pb file, --format npy, --threads; npy output compares equal to
# the expected .pb.
R=$NODE/test_relu
expect_ok "$KILN" run "$R/model.onnx" --input "x=$R/test_data_set_0/input_0.pb" \
    --output-dir "$TMP/npy" --format npy --threads 1
[ -f "$TMP/npy/output_0.npy" ] || fail "--format npy wrote no output_0.npy"
run "$KILN" compare "$TMP/npy/output_0.npy" "$R/test_data_set_0/output_0.pb"
[ "$RC" -eq 0 ] || fail "npy output differs: $(cat "$TMP/out")"

# The npy output read back as an input gives the same result again (relu is idempotent).
expect_ok "$KILN" run "$R/model.onnx" --input "x=$TMP/npy/output_0.npy" --output-dir "$TMP/again"
run "$KILN" compare "$TMP/again/output_0.pb" "$R/test_data_set_0/output_0.pb"
[ "$RC" -eq 0 ] || fail "relu of an npy input differs: $(cat "$TMP/out")"

# Printed summary of a 60-element output: first elements, count, min/max/mean.
expect_ok "$KILN" run "$R/model.onnx" --input-dir "$R/test_data_set_0"
out_has '^y: float32\[3,4,5\]$' "run print: name and type"
out_has '^  values: .* \.\.\. \(60 elements\)$' "run print: head of values"
out_has '^  min 0  max [0-9.]+  mean [0-9.]+$' "run print: stats (relu output min is 0)"
# --print-all: every element.
expect_ok "$KILN" run "$R/model.onnx" --input-dir "$R/test_data_set_0" --print-all
n=$(awk '/^  values:/ { print NF - 1 }' "$TMP/out")
[ "$n" = 60 ] || fail "--print-all printed $n values, expected 60"

# good_add: C = A + W with W an initializer (also declared as an input with a default).
write_npy "$TMP/a.npy" '<f4' '(2, 3)' 24
expect_ok "$KILN" run "$SRC/tests/data/good_add.onnx" --input "A=$TMP/a.npy"
out_has '^C: float32\[2,3\]$' "good_add: output type"
out_has '^  values: 1 2 3 1 2 3$' "good_add: zeros + [1,2,3]"
# The symbolic dim N binds to any size.
write_npy "$TMP/a5.npy" '<f4' '(5, 3)' 60
expect_ok "$KILN" run "$SRC/tests/data/good_add.onnx" --input "A=$TMP/a5.npy"
out_has '^C: float32\[5,3\]$' "good_add with N=5"

# The output folder is created when missing; --output-dir= form works.
expect_ok "$KILN" run "$R/model.onnx" --input-dir="$R/test_data_set_0" --output-dir="$TMP/new/"
[ -f "$TMP/new/output_0.pb" ] || fail "--output-dir= did not write into a new folder"
finish
