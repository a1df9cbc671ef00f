# test_optimize.sh: `kiln optimize` and `kiln run --level`. Each model is optimized at both
# levels (with and without --keep-fused), must pass `kiln check`, and the original and the
# optimized model run on the test data set must give equal outputs (`kiln compare`).
. "$(dirname "$0")/common.sh"
S=test_data_set_0

# equiv CASE ARGS...: optimize node/CASE with ARGS, check it, run both, compare the outputs.
equiv() {
    case=$1
    shift
    dir=$NODE/$case
    out=$TMP/$case.opt.onnx
    expect_ok "$KILN" optimize "$dir/model.onnx" -o "$out" "$@"
    [ -f "$out" ] || { fail "$case $*: nothing written"; return; }
    expect_ok "$KILN" check "$out"
    rm -rf "$TMP/a" "$TMP/b"
    expect_ok "$KILN" run "$dir/model.onnx" --input-dir "$dir/$S" --output-dir "$TMP/a"
    expect_ok "$KILN" run "$out" --input-dir "$dir/$S" --output-dir "$TMP/b"
    for f in "$TMP"/a/output_*.pb; do
        [ -f "$f" ] || { fail "$case: no outputs"; break; }
        run "$KILN" compare "$TMP/b/$(basename "$f")" "$f"
        [ "$RC" -eq 0 ] || fail "$case $*: $(basename "$f") differs: $(cat "$TMP/out" "$TMP/err")"
        run "$KILN" compare "$TMP/b/$(basename "$f")" "$dir/$S/$(basename "$f")"
        [ "$RC" -eq 0 ] || fail "$case $*: $(basename "$f") differs from the expected output"
    done
}

for c in test_affine_grid_2d_expanded test_layer_normalization_4d_axis0_expanded \
    test_gelu_tanh_2_expanded test_range_float_type_positive_delta_expanded \
    test_softmax_axis_1_expanded test_dropout_default_old test_identity \
    test_linear_attention_delta_expanded test_center_crop_pad_crop_and_pad_expanded; do
    [ -d "$NODE/$c" ] || { fail "missing test case $c"; continue; }
    equiv "$c" --level basic
    equiv "$c" --level extended
    equiv "$c" --level extended --keep-fused
done

# The report: per pass lines, then the summary with both histograms.
AG=$NODE/test_affine_grid_2d_expanded/model.onnx
expect_ok "$KILN" optimize "$AG" -o "$TMP/r.onnx" --level basic --report
out_has '^pass fold_constants \(round 1\): [0-9]+ -> [0-9]+ nodes, 0 -> [0-9]+ initializers; .*Constant [0-9]+ -> 0'
out_has '^optimized: 113 -> [0-9]+ nodes, 0 -> [0-9]+ initializers in [0-9]+ rounds$'
out_has '^ops before: Add 11, '
out_has '^ops after: '
# --passes runs only those.
expect_ok "$KILN" optimize "$AG" -o "$TMP/p.onnx" --passes dce --report
out_has '^optimized: 113 -> 113 nodes'
# Fewer nodes than the original, and a second optimize changes nothing.
expect_ok "$KILN" optimize "$TMP/r.onnx" -o "$TMP/r2.onnx" --level basic --report
out_has '^optimized: ([0-9]+) -> \1 nodes, ([0-9]+) -> \2 initializers in 1 round$'

# --level layout: one report line per region; the file written is extended's, byte for byte.
CNN=$SRC/demo/digits_cnn.onnx
for kf in "" --keep-fused; do
    expect_ok "$KILN" optimize "$CNN" -o "$TMP/lay.onnx" --level layout --report $kf
    if [ -z "$kf" ]; then
        out_has "^layout: graph 'torch_jit' region 1: [0-9]+ nodes \(.*MaxPool 2\) from .*, nchwc\(8,16\), 2 conversions \(1 in: 'image', 1 out: "
        out_has "^layout: graph 'torch_jit': 1 of 1 region marked"
    else # the nhwc pass made the convolutions kiln.ConvNhwc: no region left to mark
        out_has "^nhwc: graph 'torch_jit': region of 5 nodes \(kiln.FusedConv 3, MaxPool 2\) .*, to NHWC"
    fi
    expect_ok "$KILN" optimize "$CNN" -o "$TMP/ext.onnx" --level extended $kf
    cmp -s "$TMP/lay.onnx" "$TMP/ext.onnx" || fail "--level layout $kf wrote another file than extended"
done
expect_ok "$KILN" optimize "$AG" -o "$TMP/lay.onnx" --level layout --report
grep -q '^layout: .*region' "$TMP/out" && fail "affine_grid: a layout region in a graph without images"

# --shapes fixes an input; a contradicting shape is refused.
GE=$NODE/test_gelu_tanh_2_expanded
expect_ok "$KILN" optimize "$GE/model.onnx" -o "$TMP/s.onnx" --shapes x=3x4x5
expect_error 1 "--shapes x: " "$KILN" optimize "$GE/model.onnx" -o "$TMP/s2.onnx" --shapes x=2x2
expect_error 2 "--shapes" "$KILN" optimize "$GE/model.onnx" -o "$TMP/s2.onnx" --shapes x=3xx4
expect_error 1 "--shapes nope: " "$KILN" optimize "$GE/model.onnx" -o "$TMP/s2.onnx" --shapes nope=1
[ -f "$TMP/s2.onnx" ] && fail "a refused optimize wrote its output"

# External data.
expect_ok "$KILN" optimize "$AG" -o "$TMP/e.onnx" --external-data 16
expect_ok "$KILN" check "$TMP/e.onnx"

# Usage errors and failures.
expect_error 2 "needs -o" "$KILN" optimize "$AG"
expect_error 2 "needs a MODEL" "$KILN" optimize -o "$TMP/x.onnx"
expect_error 2 "--level takes basic, extended or layout" "$KILN" optimize "$AG" -o "$TMP/x.onnx" --level max
expect_error 1 "unknown optimizer pass 'zzz' \(known: fuse_qdq, fold_constants, " \
    "$KILN" optimize "$AG" -o "$TMP/x.onnx" --passes dce,zzz
expect_error 1 "" "$KILN" optimize "$TMP/missing.onnx" -o "$TMP/x.onnx"
expect_error 1 "does not link" "$KILN" optimize "$SRC/tests/data/bad_cycle.onnx" -o "$TMP/x.onnx"

# kiln run --level: the same outputs as expected.
for lvl in basic extended; do
    rm -rf "$TMP/l"
    expect_ok "$KILN" run "$AG" --level $lvl --input-dir "$NODE/test_affine_grid_2d_expanded/$S" --output-dir "$TMP/l"
    run "$KILN" compare "$TMP/l/output_0.pb" "$NODE/test_affine_grid_2d_expanded/$S/output_0.pb"
    [ "$RC" -eq 0 ] || fail "run --level $lvl: output differs"
done
expect_error 2 "--level takes basic or extended" "$KILN" run "$AG" --level none

finish
