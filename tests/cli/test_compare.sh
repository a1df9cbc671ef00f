# test_compare.sh: `kiln compare ACTUAL EXPECTED`: kinds, element types, shapes, then
# elements: floats within atol + rtol * |expected| (defaults 1e-7 and 1e-3), NaN equal to
# NaN, integers and strings exact. Exit 0 equal, 1 different, 2 trouble.
. "$(dirname "$0")/common.sh"
S=test_data_set_0
RELU=$NODE/test_relu/$S

# expect_cmp CODE PATTERN ARGS...: compare exits CODE and prints a line matching PATTERN.
expect_cmp() {
    code=$1
    pattern=$2
    shift 2
    run "$KILN" compare "$@"
    [ "$RC" -eq "$code" ] || fail "compare $* exits $RC, expected $code: $(cat "$TMP/out" "$TMP/err")"
    out_has "$pattern" "compare $*"
}

expect_cmp 0 '^equal$' "$RELU/output_0.pb" "$RELU/output_0.pb"
expect_cmp 1 '^different: [0-9]+ of 60 elements differ \(rtol 0.001, atol 1e-07\); first at \[' \
    "$RELU/input_0.pb" "$RELU/output_0.pb"
expect_cmp 0 '^equal$' "$RELU/input_0.pb" "$RELU/output_0.pb" --atol 100

# The tolerance is relative to the second (expected) file: 1.0005 vs 1 passes at rtol 1e-3,
# 1.002 vs 1 does not, unless rtol is raised.
one='\000\000\200\077'
write_npy "$TMP/one.npy" '<f4' '(1,)' 4 "$one"
write_npy "$TMP/one5.npy" '<f4' '(1,)' 4 '\142\020\200\077'
write_npy "$TMP/one2.npy" '<f4' '(1,)' 4 '\211\101\200\077'
expect_cmp 0 '^equal$' "$TMP/one5.npy" "$TMP/one.npy"
expect_cmp 1 'first at \[0\]: 1.00199997 vs 1;' "$TMP/one2.npy" "$TMP/one.npy"
expect_cmp 0 '^equal$' "$TMP/one2.npy" "$TMP/one.npy" --rtol 0.01
expect_cmp 1 'rtol 0, atol 0' "$TMP/one5.npy" "$TMP/one.npy" --rtol 0 --atol 0

# NaN matches NaN and nothing else.
nan='\000\000\300\177'
write_npy "$TMP/nan.npy" '<f4' '(2,)' 8 "$nan$one"
write_npy "$TMP/nan2.npy" '<f4' '(2,)' 8 "$nan$one"
write_npy "$TMP/ones.npy" '<f4' '(2,)' 8 "$one$one"
expect_cmp 0 '^equal$' "$TMP/nan.npy" "$TMP/nan2.npy"
expect_cmp 1 '1 of 2 elements differ.*first at \[0\]: nan vs 1' "$TMP/nan.npy" "$TMP/ones.npy" --atol 1000
expect_cmp 0 '^equal$' "$NODE/test_isnan/$S/input_0.pb" "$NODE/test_isnan/$S/input_0.pb"

# Integers are exact whatever the tolerance; types and shapes must match.
ARGMAX=$NODE/test_argmax_default_axis_example/$S/output_0.pb # int64[1,2] = [1, 1]
write_npy "$TMP/i0.npy" '<i8' '(1, 2)' 16
expect_cmp 1 '^different: 2 of 2 elements differ; first at \[0,0\]: 1 vs 0$' "$ARGMAX" "$TMP/i0.npy" --atol 1000
write_npy "$TMP/f0.npy" '<f4' '(1, 2)' 8
expect_cmp 1 '^different: element type int64 vs float32$' "$ARGMAX" "$TMP/f0.npy"
write_npy "$TMP/i21.npy" '<i8' '(2, 1)' 16
expect_cmp 1 '^different: shape \[1,2\] vs \[2,1\]$' "$ARGMAX" "$TMP/i21.npy"

# Strings.
SC=$NODE/test_string_concat/$S
expect_cmp 0 '^equal$' "$SC/output_0.pb" "$SC/output_0.pb"
expect_cmp 1 'first at \[0\]: "abc" vs "abc.com"' "$SC/input_0.pb" "$SC/output_0.pb"

# Sequences: kind and length, then item by item.
SEQ=$NODE/test_sequence_insert_at_back/$S
expect_cmp 0 '^equal$' "$SEQ/output_0.pb" "$SEQ/output_0.pb"
expect_cmp 1 '^different: a sequence vs a tensor$' "$SEQ/output_0.pb" "$RELU/output_0.pb"
expect_cmp 1 '^different: 3 items vs 4$' "$SEQ/input_0.pb" "$SEQ/output_0.pb" --kind seq

# Trouble: exit 2 with one "kiln: ..." line.
expect_error 2 "nosuch\.pb" "$KILN" compare "$TMP/nosuch.pb" "$RELU/output_0.pb"
expect_error 2 "--kind takes tensor, seq or optional; got 'map'" "$KILN" compare a b --kind map
finish
