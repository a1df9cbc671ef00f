# test_usage.sh: `kiln` help, version, unknown and not-yet-implemented subcommands, and
# usage errors (exit 2, one "kiln: ..." line).
. "$(dirname "$0")/common.sh"

expect_ok "$KILN" --help
out_has '^usage: kiln COMMAND' "kiln --help"
for cmd in info check run compare; do out_has "^  $cmd " "kiln --help (command $cmd)"; done
expect_ok "$KILN" help run
out_has '--input-dir DIR' "kiln help run"
expect_ok "$KILN" run --help
out_has '--output-dir DIR' "kiln run --help"

expect_ok "$KILN" --version
out_has '^kiln [0-9]+\.[0-9]+\.[0-9]+ \(CPU kernels: (avx512|avx2|portable)\)$' "kiln --version"

# No arguments: the overview goes to stderr and the exit status is 2.
run "$KILN"
[ "$RC" -eq 2 ] || fail "kiln with no arguments exits $RC, expected 2"
grep -q '^usage: kiln' "$TMP/err" || fail "kiln with no arguments prints no usage on stderr"

for cmd in quantize; do
    expect_error 2 "^kiln: '$cmd' is not implemented yet$" "$KILN" "$cmd" model.onnx
done
expect_ok "$KILN" help optimize
out_has '--keep-fused' "kiln help optimize"
expect_error 2 "unknown command 'frobnicate'" "$KILN" frobnicate
expect_error 2 "unknown option '--frobnicate'" "$KILN" --frobnicate
expect_error 2 "info needs a MODEL" "$KILN" info
expect_error 2 "graph needs a MODEL" "$KILN" graph
expect_error 2 "check needs a MODEL" "$KILN" check
expect_error 2 "run needs a MODEL" "$KILN" run
expect_error 2 "unknown option '--bogus'" "$KILN" run "$NODE/test_relu/model.onnx" --bogus
expect_error 2 "--input takes NAME=FILE; got 'x'" "$KILN" run "$NODE/test_relu/model.onnx" --input x
expect_error 2 "--input needs a value" "$KILN" run "$NODE/test_relu/model.onnx" --input
expect_error 2 "--format takes pb or npy; got 'csv'" "$KILN" run m.onnx --format csv
expect_error 2 "--threads takes a number" "$KILN" run m.onnx --threads -3
expect_error 2 "--threads takes a number" "$KILN" run m.onnx --threads 2x
expect_error 2 "convert needs -o OUT.onnx" "$KILN" convert model.onnx
expect_error 2 "convert needs a MODEL" "$KILN" convert -o out.onnx
expect_error 2 "--opset 'x' is not an opset number" "$KILN" convert m.onnx -o o.onnx --opset x
expect_error 2 "'--opset' needs a value" "$KILN" convert m.onnx -o o.onnx --opset
expect_error 2 "--external-data '0' is not a byte count" "$KILN" convert m.onnx -o o.onnx --external-data 0
expect_error 2 "--external-data-name needs --external-data" "$KILN" convert m.onnx -o o.onnx --external-data-name w.bin
expect_error 2 "unknown option '--bogus'" "$KILN" convert m.onnx -o o.onnx --bogus
expect_error 2 "convert takes one MODEL" "$KILN" convert a.onnx b.onnx -o o.onnx
expect_ok "$KILN" help convert
out_has '--external-data BYTES' "kiln help convert"
expect_error 2 "compare needs two files" "$KILN" compare a.pb
expect_error 2 "--rtol takes a number >= 0; got 'abc'" "$KILN" compare a.pb b.pb --rtol abc
finish
