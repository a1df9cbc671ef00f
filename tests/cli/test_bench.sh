# test_bench.sh: `kiln bench`: the JSON report (one line, the fields and their order, the
# number of runs, ordered latencies), generated inputs (a symbolic dim needs --shape), inputs
# from files, the human report, and usage errors (exit 2). Timings are only checked for
# being positive and ordered, never for their size.
. "$(dirname "$0")/common.sh"
D=$SRC/tests/data
GEMMS=$D/good_gemms.onnx # X: float32[1,16,32,32], A: float32[192,96]
DIGITS=$SRC/demo/digits_cnn.onnx # image: float32[N,1,8,8]

# json_field NAME: the number after "NAME": in the last stdout (first match).
json_field() {
    sed -n "s/.*\"$1\":\([-+0-9.eE]*\).*/\1/p" "$TMP/out" | head -n 1
}

# check_latencies WHAT: 0 < min <= median <= p90 <= max and min <= mean <= max.
check_latencies() {
    lat=$(sed -n 's/.*"latency_ms":{\([^}]*\)}.*/\1/p' "$TMP/out")
    echo "$lat" | awk -F'[:,]' -v what="$1" '
        { for (i = 1; i < NF; i += 2) { k = $i; gsub(/"/, "", k); v[k] = $(i + 1) + 0; n++ } }
        END {
            if (n != 5) { print what ": expected 5 latency fields, got " n; exit }
            if (!(v["min"] > 0)) print what ": min " v["min"] " is not positive"
            if (!(v["min"] <= v["median"] && v["median"] <= v["p90"] && v["p90"] <= v["max"]))
                print what ": latencies out of order: " $0
            if (!(v["min"] <= v["mean"] && v["mean"] <= v["max"]))
                print what ": mean outside [min, max]: " $0
        }' >"$TMP/lat_problems"
    [ -s "$TMP/lat_problems" ] && fail "$(cat "$TMP/lat_problems")"
    [ -n "$lat" ] || fail "$1: no latency_ms object in: $(cat "$TMP/out")"
}

# --json: exactly one line, the documented shape, 3 timed runs.
expect_ok "$KILN" bench "$GEMMS" --iterations 3 --warmup 1 --json
[ "$(wc -l <"$TMP/out")" -eq 1 ] || fail "--json printed $(wc -l <"$TMP/out") lines, expected 1"
json_re='^\{"model":"[^"]*good_gemms\.onnx","threads":[1-9][0-9]*,"warmup":1,"runs":3,'
json_re=$json_re'"latency_ms":\{"min":[0-9.e+-]+,"median":[0-9.e+-]+,"p90":[0-9.e+-]+,'
json_re=$json_re'"mean":[0-9.e+-]+,"max":[0-9.e+-]+\},"inputs":\{"X":\[1,16,32,32\],"A":\[192,96\]\}\}$'
out_has "$json_re" "bench --json (good_gemms)"
[ "$(json_field runs)" = 3 ] || fail "--iterations 3 gave runs '$(json_field runs)'"
check_latencies "good_gemms"

# --threads is reported as given; --iterations wins over --min-time.
expect_ok "$KILN" bench "$GEMMS" --iterations 2 --warmup 0 --threads 1 --min-time 100 --json
[ "$(json_field threads)" = 1 ] || fail "--threads 1 reported as '$(json_field threads)'"
[ "$(json_field warmup)" = 0 ] || fail "--warmup 0 reported as '$(json_field warmup)'"
[ "$(json_field runs)" = 2 ] || fail "--iterations 2 --min-time 100 gave runs '$(json_field runs)'"

# Without --iterations: at least 10 runs, however short --min-time is.
expect_ok "$KILN" bench "$GEMMS" --min-time 0 --warmup 0 --json
runs=$(json_field runs)
[ "${runs:-0}" -ge 10 ] || fail "--min-time 0 gave $runs runs, expected at least 10"
check_latencies "good_gemms --min-time 0"

# A symbolic batch dim cannot be generated without --shape: the message names input and dim.
expect_error 1 "input 'image' dim 0 is symbolic \('N'\); pass --shape image=1x1x8x8" \
    "$KILN" bench "$DIGITS" --iterations 1
expect_ok "$KILN" bench "$DIGITS" --shape image=4x1x8x8 --iterations 3 --warmup 1 --json
out_has '"inputs":\{"image":\[4,1,8,8\]\}\}$' "bench --shape image=4x1x8x8"
[ "$(json_field runs)" = 3 ] || fail "digits --shape: runs '$(json_field runs)'"
check_latencies "digits --shape"
# --shape must agree with the declared rank and fixed dims, and name a model input.
expect_error 1 "--shape image: gives 3 dims; input 'image' is float32\[N,1,8,8\] \(rank 4\)" \
    "$KILN" bench "$DIGITS" --shape image=4x1x8 --iterations 1
expect_error 1 "--shape image: dim 1 is 3; input 'image' is float32\[N,1,8,8\] \(dim 1 is 1\)" \
    "$KILN" bench "$DIGITS" --shape image=4x3x8x8 --iterations 1
expect_error 1 "--shape img: the model has no input named 'img'; its inputs are 'image'" \
    "$KILN" bench "$DIGITS" --shape img=4x1x8x8 --iterations 1

# An input from a file is used as is (16 images), in JSON and in the human report.
expect_ok "$KILN" bench "$DIGITS" --input "image=$SRC/demo/test_images.npy" --iterations 2 --json
out_has '"inputs":\{"image":\[16,1,8,8\]\}\}$' "bench --input image=test_images.npy"
expect_ok "$KILN" bench "$GEMMS" --input "A=$D/good_gemms_A.npy" --iterations 4 --warmup 0
out_has "^model: +.*good_gemms\.onnx$" "human report: model"
out_has '^threads: +[1-9][0-9]* \(one per CPU\)$' "human report: threads"
out_has '^  X +float32\[1,16,32,32\] +generated$' "human report: generated input"
out_has '^  A +float32\[192,96\] +from file$' "human report: input from a file"
out_has '^runs: +4 in [0-9.]+ s$' "human report: runs"
out_has '^latency ms: min [0-9.e+-]+  median [0-9.e+-]+  p90 [0-9.e+-]+  mean [0-9.e+-]+  max [0-9.e+-]+$' \
    "human report: latencies"
out_has '^throughput: [0-9.]+ runs/s$' "human report: throughput"
# A file bound input keeps its own shape: --shape for it is a usage error; a bad file fails.
expect_error 2 "--shape image: input 'image' is read from a file" "$KILN" bench "$DIGITS" \
    --input "image=$SRC/demo/test_images.npy" --shape image=1x1x8x8
expect_error 1 "input 'image': .*nosuch\.npy" "$KILN" bench "$DIGITS" --input "image=$TMP/nosuch.npy"

# Usage errors: exit 2, one line naming the option.
expect_error 2 "--iterations takes a number from 1 to" "$KILN" bench "$GEMMS" --iterations 0
expect_error 2 "--iterations takes a number from 1 to" "$KILN" bench "$GEMMS" --iterations -5
expect_error 2 "--iterations takes a number from 1 to" "$KILN" bench "$GEMMS" --iterations 3x
expect_error 2 "--warmup takes a number" "$KILN" bench "$GEMMS" --warmup -1
expect_error 2 "--min-time takes seconds" "$KILN" bench "$GEMMS" --min-time -0.5
expect_error 2 "--min-time takes seconds" "$KILN" bench "$GEMMS" --min-time abc
expect_error 2 "--threads takes a number" "$KILN" bench "$GEMMS" --threads 2000
for bad in image=4xx8 image= image=4x-1x8x8 image=4x1x8x8x =4x1x8x8 image; do
    expect_error 2 "--shape takes NAME=D0xD1x" "$KILN" bench "$DIGITS" --shape "$bad"
done
expect_error 2 "--iterations needs a value" "$KILN" bench "$GEMMS" --iterations
expect_error 2 "unknown option '--bogus'" "$KILN" bench "$GEMMS" --bogus
expect_error 2 "bench needs a MODEL" "$KILN" bench
expect_error 1 "nosuch\.onnx" "$KILN" bench "$TMP/nosuch.onnx"

expect_ok "$KILN" help bench
out_has '--min-time S' "kiln help bench"
finish
