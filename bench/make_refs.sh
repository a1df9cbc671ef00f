#!/bin/bash
# bench/make_refs.sh: ONNX Runtime's outputs for the model set, stored next to the models
# as the reference that bench/check_models.sh compares kiln with. See docs/benchmarks.md.
#
#   bench/make_refs.sh [MODEL.onnx...]
#
# MODEL defaults to every build/bench-models/*.onnx (bench/make_models.py). For
# build/bench-models/NAME.onnx it writes
#     build/bench-models/NAME/inputs/input_K.npy   the inputs (graph input order)
#     build/bench-models/NAME/ort/output_K.npy     ORT's outputs (graph output order)
#     build/bench-models/NAME/ort/listing.txt      `input NAME=inputs/input_K.npy` (relative to
#                                                  NAME/) and `output K TYPE NAME` lines
# with `node bench/ort_run.js MODEL --save-inputs ... --output-dir ...` (inputs from its
# deterministic generator; models with dynamic inputs get the concrete shapes listed in
# NAME.shapes, written by make_models.py). ORT runs with graph optimizations at 'all' and
# one thread per CPU. Needs scripts/install-peers.sh (onnxruntime-node). Exits 1 if ORT
# fails on any model (the others are still done).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
    shopt -s nullglob
    models=("$root"/build/bench-models/*.onnx)
    shopt -u nullglob
    if [ ${#models[@]} -eq 0 ]; then
        echo "make_refs.sh: no models in build/bench-models; run '/usr/bin/python3 bench/make_models.py'" >&2
        exit 1
    fi
fi
status=0
for m in "${models[@]}"; do
    name=$(basename "$m" .onnx)
    dir=$(dirname "$m")/$name
    shapes=()
    if [ -f "${m%.onnx}.shapes" ]; then
        while IFS= read -r s; do [ -n "$s" ] && shapes+=(--shape "$s"); done <"${m%.onnx}.shapes"
    fi
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp/inputs" "$dir.tmp/ort"
    start=$(date +%s.%N)
    if node "$root/bench/ort_run.js" "$m" "${shapes[@]}" --save-inputs "$dir.tmp/inputs" \
            --output-dir "$dir.tmp/ort" >"$dir.tmp/ort/listing.txt" 2>"$dir.tmp/ort/stderr.txt"; then
        # The listing names the files by their final place.
        sed -i "s|=.*/inputs/|=inputs/|" "$dir.tmp/ort/listing.txt"
        rm -rf "$dir"
        mv "$dir.tmp" "$dir"
        echo "$name: $(grep -c '^output ' "$dir/ort/listing.txt") outputs, $(awk -v a="$start" \
            -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
    else
        echo "$name: ONNX Runtime fails: $(grep -v '^\s*$' "$dir.tmp/ort/stderr.txt" | head -n 1 | cut -c1-300)" >&2
        rm -rf "$dir.tmp"
        status=1
    fi
done
exit $status
