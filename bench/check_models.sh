#!/bin/bash
# bench/check_models.sh: does kiln run the model set correctly? Runs `kiln run` on every
# model that has references (bench/make_refs.sh) and compares each output with ONNX
# Runtime's (`kiln compare --rtol 1e-3 --atol 1e-4`). See docs/benchmarks.md.
#
#   bench/check_models.sh [--kiln PATH] [--timeout S] [MODEL.onnx...]
#
# MODEL defaults to every build/bench-models/*.onnx with a NAME/ort folder. Prints a
# Markdown table, one row per model:
#     | model | kiln run | outputs equal | max abs error | kiln s | note |
# `kiln run` is the whole command (load, session, one run, writing .npy), limited to
# --timeout S seconds (default 600). The max abs error is over all float outputs (numpy,
# when /usr/bin/python3 has it). A model kiln refuses or gets wrong is a row with the
# reason, never skipped. Exits 1 if any model fails or differs.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$root/build/release/kiln}
limit=600
rtol=1e-3
atol=1e-4
models=()
while [ $# -gt 0 ]; do
    case $1 in
        --kiln) kiln=$2; shift ;;
        --timeout) limit=$2; shift ;;
        -h|--help) sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
        -*) echo "check_models.sh: unknown option '$1'" >&2; exit 2 ;;
        *) models+=("$1") ;;
    esac
    shift
done
if [ ! -x "$kiln" ]; then
    echo "check_models.sh: kiln not found at $kiln (build it, or pass --kiln PATH)" >&2
    exit 1
fi
if [ ${#models[@]} -eq 0 ]; then
    shopt -s nullglob
    for m in "$root"/build/bench-models/*.onnx; do
        [ -d "${m%.onnx}/ort" ] && models+=("$m")
    done
    shopt -u nullglob
    if [ ${#models[@]} -eq 0 ]; then
        echo "check_models.sh: no model with references; run bench/make_models.py, then bench/make_refs.sh" >&2
        exit 1
    fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
status=0
npy_ok=0
/usr/bin/python3 -c 'import numpy' 2>/dev/null && npy_ok=1

# Largest |kiln - ort| over the float outputs of two folders of output_K.npy.
max_err() {
    [ $npy_ok -eq 1 ] || { echo "—"; return; }
    /usr/bin/python3 - "$1" "$2" <<'PY'
import glob, os, sys
import numpy as np
worst = None
for e in sorted(glob.glob(os.path.join(sys.argv[2], "output_*.npy"))):
    a = os.path.join(sys.argv[1], os.path.basename(e))
    if not os.path.exists(a):
        continue
    x, y = np.load(a), np.load(e)
    if x.shape != y.shape or x.dtype.kind != "f":
        continue
    d = np.abs(x.astype(np.float64) - y.astype(np.float64))
    d = d[~np.isnan(d)]
    if d.size:
        worst = max(worst or 0.0, float(d.max()))
print("—" if worst is None else f"{worst:.3g}")
PY
}

echo "kiln: $kiln; references: ONNX Runtime (bench/make_refs.sh); kiln compare --rtol $rtol --atol $atol"
echo
echo "| model | kiln run | outputs equal | max abs error | kiln s | note |"
echo "|---|---|---:|---:|---:|---|"
for m in "${models[@]}"; do
    name=$(basename "$m" .onnx)
    ref=${m%.onnx}
    listing=$ref/ort/listing.txt
    if [ ! -f "$listing" ]; then
        echo "| $name | — | | | | no references: run bench/make_refs.sh $m |"
        status=1
        continue
    fi
    inputs=()
    while IFS= read -r line; do
        inputs+=(--input "${line%%=*}=$ref/${line#*=}")
    done < <(sed -n 's/^input //p' "$listing")
    out=$tmp/$name
    mkdir -p "$out"
    start=$(date +%s.%N)
    timeout "$limit" "$kiln" run "$m" "${inputs[@]}" --format npy --output-dir "$out" >/dev/null 2>"$out.err"
    rc=$?
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if [ $rc -ne 0 ]; then
        status=1
        if [ $rc -eq 124 ]; then
            note="timed out after $limit s"
        else
            note=$(grep -v '^\s*$' "$out.err" | head -n 1 | cut -c1-200 | sed 's/|/\\|/g')
        fi
        echo "| $name | fails | | | $secs | $note |"
        continue
    fi
    n=0
    eq=0
    note=""
    while read -r _ k _ oname; do
        n=$((n + 1))
        r=$("$kiln" compare "$out/output_$k.npy" "$ref/ort/output_$k.npy" --rtol "$rtol" --atol "$atol" 2>&1 |
            head -n 1)
        if [ "$r" = equal ]; then
            eq=$((eq + 1))
        elif [ -z "$note" ]; then
            note="$oname: $(echo "$r" | cut -c1-160 | sed 's/|/\\|/g')"
        fi
    done < <(grep '^output ' "$listing")
    [ $eq -eq $n ] || status=1
    result=pass
    [ $eq -eq $n ] || result=differs
    echo "| $name | $result | $eq/$n | $(max_err "$out" "$ref/ort") | $secs | $note |"
done
exit $status
