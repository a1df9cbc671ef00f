# test_demo.sh: the digits demo model (demo/, trained in PyTorch by demo/train_digits.py)
# gives in kiln the logits PyTorch gave for the same 16 images, and its in-graph ArgMax
# (`label`) agrees with the argmax of those logits. Also runs scripts/demo.sh's parsing
# on kiln's real output.
. "$(dirname "$0")/common.sh"
DEMO=$SRC/demo

expect_ok "$KILN" run "$DEMO/digits_cnn.onnx" --input "image=$DEMO/test_images.npy" \
    --output-dir "$TMP/demo_out" --format npy
# Conv and Gemm sum in a different order than PyTorch: allow float32 rounding, no more.
run "$KILN" compare "$TMP/demo_out/output_0.npy" "$DEMO/test_logits.npy" --rtol 1e-4 --atol 1e-5
[ "$RC" -eq 0 ] || fail "kiln's logits differ from PyTorch's: $(cat "$TMP/out" "$TMP/err")"

expect_ok "$KILN" run "$DEMO/digits_cnn.onnx" --input "image=$DEMO/test_images.npy" --print-all
out_has '^logits: float32\[16,10\]$' "demo: logits type"
out_has '^label: int64\[16\]$' "demo: label type"
# Row-wise argmax of the printed logits must equal the printed labels.
mismatch=$(awk '
    /^logits: / { mode = "l"; next }
    /^label: / { mode = "y"; next }
    /^  values:/ && mode == "l" { for (i = 2; i <= NF; i++) logit[n++] = $i }
    /^  values:/ && mode == "y" { for (i = 2; i <= NF; i++) label[m++] = $i }
    END {
        if (n != 160 || m != 16) { print "counts " n " " m; exit }
        for (r = 0; r < 16; r++) {
            best = 0
            for (c = 1; c < 10; c++) if (logit[r * 10 + c] + 0 > logit[r * 10 + best] + 0) best = c
            if (best != label[r] + 0) print "row " r ": argmax " best " label " label[r]
        }
    }' "$TMP/out")
[ -z "$mismatch" ] || fail "demo: label output disagrees with the logits: $mismatch"
finish
