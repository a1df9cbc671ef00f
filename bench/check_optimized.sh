#!/bin/bash
# bench/check_optimized.sh: does `kiln optimize` keep the model set correct? For every model
# with references (bench/make_refs.sh):
#   1. kiln optimize --level extended              -> OUT/NAME.std.onnx (standard ONNX ops)
#      kiln optimize --level extended --keep-fused -> OUT/NAME.fused.onnx (kiln's fused ops)
#   2. onnx.checker.check_model(full_check=True) on the standard-ops model
#   3. kiln run on the original, the standard-ops and the fused model, and ONNX Runtime
#      (bench/ort_run.js) on the standard-ops model, all with the inputs make_refs.sh saved
#   4. every output against ORT's reference outputs of the original with
#      `kiln compare --rtol R --atol A` (default 1e-4, 1e-5)
# See docs/benchmarks.md.
#
#   bench/check_optimized.sh [--kiln PATH] [--rtol R] [--atol A] [--out DIR] [MODEL.onnx...]
#
# MODEL defaults to every build/bench-models/*.onnx with a NAME/ort folder; OUT defaults to
# build/bench-opt (the optimized models and outputs stay there). Prints a Markdown table:
#     | model | nodes | std | fused | fused: highlights | checker (std) | kiln orig | kiln std | kiln fused | ORT std |
# (node counts from `kiln optimize --report`: before, after each form; highlights from
# bench/opt_summary.py ops) where each run column is `equal/outputs max-abs-error` (max
# |a-b| over float outputs), then a list with the highlights of each standard-ops model and
# any failure. The first difference of each output that differs goes to stderr. Exits 1 if anything fails or
# differs. Needs /usr/bin/python3 with onnx and numpy, and node with onnxruntime-node
# (scripts/install-peers.sh; KILN_PEERS_DIR as for the other bench scripts).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$root/build/release/kiln}
rtol=1e-4
atol=1e-5
out=$root/build/bench-opt
py=/usr/bin/python3
models=()
while [ $# -gt 0 ]; do
    case $1 in
        --kiln) kiln=$2; shift ;;
        --rtol) rtol=$2; shift ;;
        --atol) atol=$2; shift ;;
        --out) out=$2; shift ;;
        -h|--help) sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
        -*) echo "check_optimized.sh: unknown option '$1'" >&2; exit 2 ;;
        *) models+=("$1") ;;
    esac
    shift
done
if [ ! -x "$kiln" ]; then
    echo "check_optimized.sh: kiln not found at $kiln (build it, or pass --kiln PATH)" >&2
    exit 1
fi
if [ ${#models[@]} -eq 0 ]; then
    shopt -s nullglob
    for m in "$root"/build/bench-models/*.onnx; do
        [ -d "${m%.onnx}/ort" ] && models+=("$m")
    done
    shopt -u nullglob
    if [ ${#models[@]} -eq 0 ]; then
        echo "check_optimized.sh: no model with references; run bench/make_models.py, then bench/make_refs.sh" >&2
        exit 1
    fi
fi
mkdir -p "$out"
status=0

# compare_dir DIR REFDIR LISTING: "EQ/N ABS" (first difference on stderr)
compare_dir() {
    local n=0 eq=0 r
    while read -r _ k _ oname; do
        n=$((n + 1))
        if [ ! -f "$1/output_$k.npy" ]; then
            continue
        fi
        r=$("$kiln" compare "$1/output_$k.npy" "$2/output_$k.npy" --rtol "$rtol" --atol "$atol" 2>&1 | head -n 1)
        if [ "$r" = equal ]; then
            eq=$((eq + 1))
        else
            echo "    $oname: $r" >&2
        fi
    done < <(grep '^output ' "$3")
    [ $eq -eq $n ] || status=1
    echo "$eq/$n $($py "$root/bench/opt_summary.py" maxerr "$1" "$2" | cut -d' ' -f1)"
}

echo "kiln: $kiln; kiln optimize --level extended [--keep-fused]; references: ONNX Runtime on the original (bench/make_refs.sh); kiln compare --rtol $rtol --atol $atol"
echo
echo "| model | nodes | std | fused | fused: highlights | checker (std) | kiln orig | kiln std | kiln fused | ORT std |"
echo "|---|---:|---:|---:|---|---|---|---|---|---|"
notes=()
for m in "${models[@]}"; do
    name=$(basename "$m" .onnx)
    ref=${m%.onnx}
    listing=$ref/ort/listing.txt
    if [ ! -f "$listing" ]; then
        echo "| $name | no references: run bench/make_refs.sh $m | | | | | | | | |"
        status=1
        continue
    fi
    inputs=()
    ortin=()
    while IFS= read -r line; do
        inputs+=(--input "${line%%=*}=$ref/${line#*=}")
        ortin+=(--input "${line%%=*}=$ref/${line#*=}")
    done < <(sed -n 's/^input //p' "$listing")
    w=$out/$name
    rm -rf "$w"
    mkdir -p "$w"
    std=$w/$name.std.onnx
    fused=$w/$name.fused.onnx
    before=— nstd=— nfused=—
    if "$kiln" optimize "$m" -o "$std" --level extended --report >"$w/std.report" 2>"$w/std.err"; then
        before=$(sed -n 's/^optimized: \([0-9]*\) -> \([0-9]*\) nodes.*/\1/p' "$w/std.report")
        nstd=$(sed -n 's/^optimized: \([0-9]*\) -> \([0-9]*\) nodes.*/\2/p' "$w/std.report")
    else
        nstd="fails"; status=1; notes+=("$name: optimize: $(head -n 1 "$w/std.err")")
    fi
    if "$kiln" optimize "$m" -o "$fused" --level extended --keep-fused --report >"$w/fused.report" 2>"$w/fused.err"; then
        nfused=$(sed -n 's/^optimized: \([0-9]*\) -> \([0-9]*\) nodes.*/\2/p' "$w/fused.report")
    else
        nfused="fails"; status=1; notes+=("$name: optimize --keep-fused: $(head -n 1 "$w/fused.err")")
    fi
    hl=— chk=—
    [ -f "$fused" ] && hl=$($py "$root/bench/opt_summary.py" ops "$fused" 2>&1 | tail -n 1)
    if [ -f "$std" ]; then
        chk=$($py "$root/bench/opt_summary.py" check "$std" 2>&1 | tail -n 1 | sed 's/|/\\|/g')
        [ "$chk" = ok ] || status=1
        notes+=("$name std: $($py "$root/bench/opt_summary.py" ops "$std" 2>&1 | tail -n 1)")
    fi
    res=()
    for variant in orig std fused; do
        case $variant in
            orig) model=$m ;;
            std) model=$std ;;
            fused) model=$fused ;;
        esac
        if [ ! -f "$model" ]; then res+=("—"); continue; fi
        mkdir -p "$w/kiln-$variant"
        if "$kiln" run "$model" "${inputs[@]}" --format npy --output-dir "$w/kiln-$variant" \
                >/dev/null 2>"$w/kiln-$variant.err"; then
            echo "$name kiln $variant:" >&2
            res+=("$(compare_dir "$w/kiln-$variant" "$ref/ort" "$listing")")
        else
            res+=("fails"); status=1
            notes+=("$name: kiln run $variant: $(grep -v '^\s*$' "$w/kiln-$variant.err" | head -n 1 | cut -c1-200)")
        fi
    done
    if [ -f "$std" ]; then
        mkdir -p "$w/ort-std"
        if node "$root/bench/ort_run.js" "$std" "${ortin[@]}" --output-dir "$w/ort-std" >/dev/null 2>"$w/ort-std.err"; then
            echo "$name ORT std:" >&2
            res+=("$(compare_dir "$w/ort-std" "$ref/ort" "$listing")")
        else
            res+=("fails"); status=1
            notes+=("$name: ORT on std: $(grep -v '^\s*$' "$w/ort-std.err" | head -n 1 | cut -c1-200)")
        fi
    else
        res+=("—")
    fi
    echo "| $name | $before | $nstd | $nfused | $hl | $chk | ${res[0]} | ${res[1]} | ${res[2]} | ${res[3]} |"
    # The optimized models are large: keep only the reports and outputs.
    [ -n "${KEEP_MODELS:-}" ] || rm -f "$std" "$fused"
done
if [ ${#notes[@]} -gt 0 ]; then
    echo
    for n in "${notes[@]}"; do echo "- $n"; done
fi
exit $status
