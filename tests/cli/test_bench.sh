# test_bench.sh: `kiln bench`: the JSON report (one line, the fields and their order, the
# number of runs, ordered latencies), generated inputs (a symbolic dim needs --shape), inputs
# from files, the human report, --profile and --export-profile (a Chrome trace that Python's
# json module reads, one event per node per timed run, subgraph nodes named after their
# Loop), and usage errors (exit 2). Timings are only checked for being positive and ordered,
# never for their size.
. "$(dirname "$0")/common.sh"
D=$SRC/tests/data
GEMMS=$D/good_gemms.onnx # X: float32[1,16,32,32], A: float32[192,96]
DIGITS=$SRC/demo/digits_cnn.onnx # image: float32[N,1,8,8]

# json_field NAME: the number after "NAME": in the last stdout (first match).
json_field() {
    sed -n "s/.*\"$1\":\([-+0-9.eE]*\).*/\1/p" "$TMP/out" | head -n 1
}

# check_latencies WHAT: 0 < min <= median <= p90 <= p95 <= p99 <= max and min <= mean <= max.
check_latencies() {
    lat=$(sed -n 's/.*"latency_ms":{\([^}]*\)}.*/\1/p' "$TMP/out")
    echo "$lat" | awk -F'[:,]' -v what="$1" '
        { for (i = 1; i < NF; i += 2) { k = $i; gsub(/"/, "", k); v[k] = $(i + 1) + 0; n++ } }
        END {
            if (n != 7) { print what ": expected 7 latency fields, got " n; exit }
            if (!(v["min"] > 0)) print what ": min " v["min"] " is not positive"
            if (!(v["min"] <= v["median"] && v["median"] <= v["p90"] && v["p90"] <= v["p95"] &&
                  v["p95"] <= v["p99"] && v["p99"] <= v["max"]))
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
json_re=$json_re'"p95":[0-9.e+-]+,"p99":[0-9.e+-]+,"mean":[0-9.e+-]+,"max":[0-9.e+-]+\},'
json_re=$json_re'"throughput_per_s":[0-9.e+-]+,"cpu_ms":[0-9.e+-]+,"load_ms":[0-9.e+-]+,"peak_rss_mb":[0-9.e+-]+,"iterations":3,'
json_re=$json_re'"inputs":\{"X":\[1,16,32,32\],"A":\[192,96\]\}\}$'
out_has "$json_re" "bench --json (good_gemms)"
[ "$(json_field runs)" = 3 ] || fail "--iterations 3 gave runs '$(json_field runs)'"
check_latencies "good_gemms"
for f in throughput_per_s cpu_ms load_ms peak_rss_mb; do
    awk -v v="$(json_field $f)" 'BEGIN { exit !(v + 0 > 0) }' || fail "--json: $f '$(json_field $f)' is not positive"
done

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
# --duration is --min-time under another name.
expect_ok "$KILN" bench "$GEMMS" --duration 0 --warmup 0 --json
runs=$(json_field runs)
[ "${runs:-0}" -ge 10 ] || fail "--duration 0 gave $runs runs, expected at least 10"
[ "$(json_field iterations)" = "$runs" ] || fail "--duration 0: iterations '$(json_field iterations)' != runs $runs"

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

# An ONNX model is built into an engine first, as `kiln build` builds it (fused, channels-last
# ops), with the --shape as its one-shape profile; --level none runs the model as it is.
expect_ok "$KILN" bench "$DIGITS" --shape image=4x1x8x8 --iterations 2 --warmup 0 --profile
out_has '^ +[0-9.]+ +[0-9.]+% +3  ConvNhwc$' "bench builds an engine: ConvNhwc in the profile"
out_has '^latency ms: min ' "bench on the built engine: latencies"
expect_ok "$KILN" bench "$DIGITS" --shape image=4x1x8x8 --iterations 2 --warmup 0 --profile --level none
out_has '^ +[0-9.]+ +[0-9.]+% +3  Conv$' "bench --level none: the model's own Conv nodes"
expect_ok "$KILN" bench "$DIGITS" --shape image=4x1x8x8 --iterations 2 --warmup 0 --profile --level basic
out_has '^ +[0-9.]+ +[0-9.]+% +[0-9]+  [A-Za-z]+$' "bench --level basic: an op-type row"
expect_error 2 "--level takes none, basic, extended or layout; got 'max'" \
    "$KILN" bench "$DIGITS" --shape image=4x1x8x8 --iterations 1 --level max
"$KILN" build "$DIGITS" -o "$TMP/digits.kiln" --threads 1 >/dev/null 2>&1 || fail "build digits engine"
expect_error 2 "is an engine, optimized when it was built: drop --level" \
    "$KILN" bench "$TMP/digits.kiln" --shape image=4x1x8x8 --iterations 1 --level basic

# An input from a file is used as is (16 images), in JSON and in the human report.
expect_ok "$KILN" bench "$DIGITS" --input "image=$SRC/demo/test_images.npy" --iterations 2 --json
out_has '"inputs":\{"image":\[16,1,8,8\]\}\}$' "bench --input image=test_images.npy"
expect_ok "$KILN" bench "$GEMMS" --input "A=$D/good_gemms_A.npy" --iterations 4 --warmup 0
out_has "^model: +.*good_gemms\.onnx$" "human report: model"
out_has '^threads: +[1-9][0-9]* \(one per CPU\)$' "human report: threads"
out_has '^  X +float32\[1,16,32,32\] +generated$' "human report: generated input"
out_has '^  A +float32\[192,96\] +from file$' "human report: input from a file"
out_has '^runs: +4 in [0-9.]+ s$' "human report: runs"
out_has '^latency ms: min [0-9.e+-]+  median [0-9.e+-]+  p90 [0-9.e+-]+  p95 [0-9.e+-]+  p99 [0-9.e+-]+  mean [0-9.e+-]+  max [0-9.e+-]+$' \
    "human report: latencies"
out_has '^throughput: [0-9.]+ runs/s$' "human report: throughput"
out_has '^load: +[0-9.]+ ms \(model load and session creation\)$' "human report: load time"
out_has '^peak RSS: +[0-9.]+ MB$' "human report: peak RSS"
# A file bound input keeps its own shape: --shape for it is a usage error; a bad file fails.
expect_error 2 "--shape image: input 'image' is read from a file" "$KILN" bench "$DIGITS" \
    --input "image=$SRC/demo/test_images.npy" --shape image=1x1x8x8
expect_error 1 "input 'image': .*nosuch\.npy" "$KILN" bench "$DIGITS" --input "image=$TMP/nosuch.npy"

# --profile: one row per node (3 Gemm-like nodes in good_gemms? counted from the trace below),
# sorted by cost, with op type, kernel and output shapes; then the per-op-type summary.
expect_ok "$KILN" bench "$GEMMS" --iterations 3 --warmup 1 --profile --export-profile "$TMP/trace.json"
out_has '^profile: +[1-9][0-9]* nodes?, times summed over 3 timed runs$' "--profile: header"
out_has '^ +total ms +share +calls +op type +node +kernel +output shapes$' "--profile: column titles"
out_has '^ +[0-9.]+ +[0-9.]+% +3  [A-Za-z]+ .* cpu:[A-Za-z]+ v[0-9]+[-+0-9]* +float32\[[0-9,]+\]$' "--profile: a node row"
out_has '^by op type \(main graph\):$' "--profile: op type summary"
awk '/^profile:/ { on = 1; next } /^by op type/ { on = 0 } on && NR > 0 && $1 ~ /^[0-9.]+$/ { print $1 }' \
    "$TMP/out" >"$TMP/costs"
sort -g -r "$TMP/costs" | cmp -s - "$TMP/costs" || fail "--profile: rows not sorted by cost: $(cat "$TMP/costs")"
nodes=$(sed -n 's/^profile: *\([0-9]*\) node.*/\1/p' "$TMP/out")
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
# check_trace FILE RUNS NODES: a JSON array of X events, RUNS per node, non-negative times.
check_trace() {
    "$PY" -c '
import json, sys, collections
ev = json.load(open(sys.argv[1]))
runs, nodes = int(sys.argv[2]), int(sys.argv[3])
assert isinstance(ev, list), "not an array"
per = collections.Counter(e["name"] for e in ev)
assert len(per) == nodes, "%d node names, expected %d" % (len(per), nodes)
assert all(c == runs for c in per.values()), "events per node: %s" % dict(per)
for e in ev:
    assert e["ph"] == "X" and e["ts"] >= 0 and e["dur"] >= 0, e
    assert isinstance(e["pid"], int) and isinstance(e["tid"], int) and e["cat"], e
    assert "shapes" in e["args"], e
for n in sys.argv[4:]:
    assert n in per, "no event for %s in %s" % (n, sorted(per))
' "$@" 2>"$TMP/trace_err" || fail "trace $1: $(cat "$TMP/trace_err")"
}
check_trace "$TMP/trace.json" 3 "${nodes:-0}"
# With --json the profile comes as "profile":{"nodes":[...],"op_types":[...]}.
expect_ok "$KILN" bench "$GEMMS" --iterations 2 --warmup 0 --profile --json
"$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
p = r["profile"]
assert p["nodes"] and p["op_types"], p
assert all(n["calls"] == 2 and n["total_ms"] >= 0 and n["kernel"].startswith("cpu:") for n in p["nodes"]), p
costs = [n["total_ms"] for n in p["nodes"]]
assert costs == sorted(costs, reverse=True), costs
assert abs(sum(o["share"] for o in p["op_types"]) - 1) < 0.01, p["op_types"]
' "$TMP/out" 2>"$TMP/json_err" || fail "--profile --json: $(cat "$TMP/json_err")"
# Loop body nodes are named after the Loop node: "loop_node/body_node".
LOOP=$NODE/test_loop11/model.onnx
expect_ok "$KILN" bench "$LOOP" --input-dir "$NODE/test_loop11/test_data_set_0" --iterations 2 --warmup 1 \
    --profile --export-profile "$TMP/loop.json"
out_has '^ +[0-9.]+ +[0-9.]+% +[0-9]+  [A-Za-z]+ +[^ ]+/[^ ]+ ' "--profile: a Loop body node"
nodes=$(sed -n 's/^profile: *\([0-9]*\) node.*/\1/p' "$TMP/out")
"$PY" -c '
import json, sys
ev = json.load(open(sys.argv[1]))
assert any("/" in e["name"] for e in ev), sorted(set(e["name"] for e in ev))
' "$TMP/loop.json" 2>"$TMP/loop_err" || fail "loop trace: $(cat "$TMP/loop_err")"
expect_error 1 "cannot open" "$KILN" bench "$GEMMS" --iterations 1 --export-profile "$TMP/no/such/dir/t.json"

# Usage errors: exit 2, one line naming the option.
expect_error 2 "--iterations takes a number from 1 to" "$KILN" bench "$GEMMS" --iterations 0
expect_error 2 "--iterations takes a number from 1 to" "$KILN" bench "$GEMMS" --iterations -5
expect_error 2 "--iterations takes a number from 1 to" "$KILN" bench "$GEMMS" --iterations 3x
expect_error 2 "--warmup takes a number" "$KILN" bench "$GEMMS" --warmup -1
expect_error 2 "--min-time takes seconds" "$KILN" bench "$GEMMS" --min-time -0.5
expect_error 2 "--min-time takes seconds" "$KILN" bench "$GEMMS" --min-time abc
expect_error 2 "--duration takes seconds" "$KILN" bench "$GEMMS" --duration -1
expect_error 2 "--export-profile needs a value" "$KILN" bench "$GEMMS" --export-profile
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
