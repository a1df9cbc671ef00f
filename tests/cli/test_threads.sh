# test_threads.sh: `kiln run --threads N`. tests/data/good_gemms.onnx has a Conv, a MatMul,
# and Relu, Add and Softmax over their outputs, large enough to be split across threads; with 2, 3 and 4 threads the
# outputs must match the one-thread run (rtol 1e-6: each output element is still summed by
# one GEMM call in K order, but the GEMM library may pick another kernel for a narrower
# block). Bad thread counts are usage errors. Under the TSan build of scripts/test.sh this
# test also checks the pool for data races.
. "$(dirname "$0")/common.sh"
D=$SRC/tests/data
M=$D/good_gemms.onnx

expect_ok "$KILN" run "$M" --input "X=$D/good_gemms_X.npy" --input "A=$D/good_gemms_A.npy" \
    --threads 1 --output-dir "$TMP/t1"
for t in 2 3 4 0; do
    expect_ok "$KILN" run "$M" --input "X=$D/good_gemms_X.npy" --input "A=$D/good_gemms_A.npy" \
        --threads "$t" --output-dir "$TMP/t$t"
    for k in 0 1 2; do
        run "$KILN" compare "$TMP/t$t/output_$k.pb" "$TMP/t1/output_$k.pb" --rtol 1e-6 --atol 1e-6
        [ "$RC" -eq 0 ] || fail "--threads $t: output $k differs from --threads 1: $(cat "$TMP/out" "$TMP/err")"
    done
done

run "$KILN" run "$M" --threads -1
[ "$RC" -eq 2 ] || fail "--threads -1: exit $RC, expected 2"
grep -q 'threads' "$TMP/err" || fail "--threads -1: message does not name the option: $(cat "$TMP/err")"
run "$KILN" run "$M" --threads 2000
[ "$RC" -eq 2 ] || fail "--threads 2000: exit $RC, expected 2"
finish
