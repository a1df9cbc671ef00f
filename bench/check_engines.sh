#!/bin/bash
# bench/check_engines.sh: do engine files run the model set exactly as the models do?
# For every model with references (bench/make_refs.sh): `kiln build` an engine (with a
# profile min=opt=max at the shapes of NAME.shapes for dynamic models), run it in a fresh
# process, and compare its outputs byte for byte with `kiln run MODEL --level extended`
# (the same optimized graph, built and run in one process). Also reports the build time,
# the engine's load time and peak RSS (`kiln bench ENGINE --json`), the planned arena
# against the sum of the intermediates (`kiln info ENGINE`), and whether the engine's
# outputs equal ONNX Runtime's (`kiln compare --rtol 1e-3 --atol 1e-4`). See
# docs/benchmarks.md.
#
# With --ort, ONNX Runtime's session creation time and peak RSS for the same model, inputs
# and threads (bench/ort_bench.js --json: Node's own peak before the session is in
# base_rss_mb, reported in the header line) go next to the engine's.
#
#   bench/check_engines.sh [--kiln PATH] [--threads N] [--ort] [MODEL.onnx...]
#
# Prints a Markdown table; exits 1 if any engine fails or differs.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$root/build/release/kiln}
threads=1
ort_cols=0
models=()
while [ $# -gt 0 ]; do
    case $1 in
        --kiln) kiln=$2; shift ;;
        --threads) threads=$2; shift ;;
        --ort) ort_cols=1 ;;
        -h|--help) sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
        -*) echo "check_engines.sh: unknown option '$1'" >&2; exit 2 ;;
        *) models+=("$1") ;;
    esac
    shift
done
if [ ${#models[@]} -eq 0 ]; then
    shopt -s nullglob
    for m in "$root"/build/bench-models/*.onnx; do
        [ -d "${m%.onnx}/ort" ] && models+=("$m")
    done
    shopt -u nullglob
fi
[ ${#models[@]} -gt 0 ] || { echo "check_engines.sh: no models; run bench/make_models.py and bench/make_refs.sh" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-engines.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
status=0
json_field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" "$2" | head -n 1; }

echo "kiln: $kiln; threads $threads; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
echo
if [ $ort_cols -eq 1 ]; then
    echo "| model | build s | engine MB | load ms | ORT session ms | peak RSS MB | ORT peak RSS MB | arena / intermediates | bit-equal to direct run | equal to ORT |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
else
    echo "| model | build s | engine MB | load ms | peak RSS MB | arena / intermediates | bit-equal to direct run | equal to ORT |"
    echo "|---|---:|---:|---:|---:|---:|---|---|"
fi
for m in "${models[@]}"; do
    name=$(basename "$m" .onnx)
    ref=${m%.onnx}
    inputs=()
    while IFS= read -r line; do
        inputs+=(--input "${line%%=*}=$ref/${line#*=}")
    done < <(sed -n 's/^input //p' "$ref/ort/listing.txt")
    prof=()
    if [ -f "$ref.shapes" ]; then
        while IFS= read -r line; do
            [ -n "$line" ] || continue
            prof+=(--profile "${line%%=*}=min:${line#*=},opt:${line#*=},max:${line#*=}")
        done < <(tr ',' '\n' < "$ref.shapes")
    fi
    eng=$tmp/$name.kiln
    start=$(date +%s.%N)
    if ! "$kiln" build "$m" -o "$eng" --threads "$threads" "${prof[@]}" >/dev/null 2>"$tmp/err"; then
        echo "| $name | fails | | | | | | $(head -n1 "$tmp/err" | cut -c1-160 | sed 's/|/\\|/g') |"
        status=1
        continue
    fi
    bs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    mb=$(awk -v s="$(stat -c %s "$eng")" 'BEGIN { printf "%.0f", s / 1048576 }')
    mkdir -p "$tmp/e_$name" "$tmp/d_$name"
    "$kiln" run "$eng" "${inputs[@]}" --format npy --output-dir "$tmp/e_$name" >/dev/null 2>"$tmp/err1"
    r1=$?
    "$kiln" run "$m" --level extended --threads "$threads" "${inputs[@]}" --format npy --output-dir "$tmp/d_$name" \
        >/dev/null 2>"$tmp/err2"
    r2=$?
    same=yes
    if [ $r1 -ne 0 ] || [ $r2 -ne 0 ]; then
        same="run failed: $(cat "$tmp/err1" "$tmp/err2" | head -n1 | cut -c1-120 | sed 's/|/\\|/g')"
    else
        for f in "$tmp/d_$name"/output_*.npy; do
            cmp -s "$f" "$tmp/e_$name/$(basename "$f")" || same="no: $(basename "$f") differs"
        done
    fi
    [ "$same" = yes ] || status=1
    ort=yes
    for f in "$ref"/ort/output_*.npy; do
        r=$("$kiln" compare "$tmp/e_$name/$(basename "$f")" "$f" --rtol 1e-3 --atol 1e-4 2>&1 | head -n 1)
        [ "$r" = equal ] || ort="no: $(basename "$f")"
    done
    "$kiln" bench "$eng" "${inputs[@]}" --iterations 3 --warmup 1 --json >"$tmp/b.json" 2>/dev/null
    load=$(json_field load_ms "$tmp/b.json")
    rss=$(json_field peak_rss_mb "$tmp/b.json")
    plan=$("$kiln" info "$eng" | sed -n 's/^memory plan: *//p' | head -n 1 |
        sed 's/.*planned arena \(.*\) for intermediates summing to \(.*\)/\1 \/ \2/')
    if [ $ort_cols -eq 1 ]; then
        ort_in=()
        while IFS= read -r line; do
            ort_in+=(--input "${line%%=*}=$ref/${line#*=}")
        done < <(sed -n 's/^input //p' "$ref/ort/listing.txt")
        node "$root/bench/ort_bench.js" "$m" "${ort_in[@]}" --threads "$threads" --iterations 3 --warmup 1 --json \
            >"$tmp/o.json" 2>/dev/null
        oload=$(json_field load_ms "$tmp/o.json")
        orss=$(json_field peak_rss_mb "$tmp/o.json")
        obase=$(json_field base_rss_mb "$tmp/o.json")
        echo "| $name | $bs | $mb | ${load:-—} | ${oload:-—} | ${rss:-—} | ${orss:-—} (Node+ORT alone ${obase:-?}) | ${plan:-unplanned} | $same | $ort |"
    else
        echo "| $name | $bs | $mb | ${load:-—} | ${rss:-—} | ${plan:-unplanned} | $same | $ort |"
    fi
done
exit $status
