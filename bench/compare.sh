#!/bin/bash
# bench/compare.sh: kiln against ONNX Runtime (CPU), side by side, on the same machine, with
# the same models, inputs, thread counts and run counts. See docs/benchmarks.md.
#
#   bench/compare.sh [--threads T[,T...]] [--warmup N] [--iterations N | --min-time S]
#                    [--rounds R] [--kiln PATH] [--isa avx2]
#                    [--check [--rtol R] [--atol A] [--level L]] [MODEL...]
#
# MODEL defaults to every build/bench-models/*.onnx (bench/make_models.py). For each model
# the inputs are generated once (bench/ort_run.js --save-inputs, written as .npy; a model
# with symbolic input dims takes the shapes in NAME.shapes next to it) and given to both
# engines. Timing mode (the default), for each T (default 1):
#     KILN build MODEL -o ENGINE --threads T   (a profile fixed at NAME.shapes' shapes if any)
#     then R rounds (default 3), alternating the engines (kiln first in even rounds, ORT in odd):
#         KILN bench ENGINE --input ... --threads T --warmup N --min-time S --json
#         node bench/ort_bench.js MODEL (the same options)
# and prints a Markdown table: the median latency of each (the median of the rounds'
# medians), ratio ORT/kiln (> 1: kiln faster), kiln's engine load time and ORT's session
# creation time, the peak resident memory of each process (the largest over the rounds),
# then the geometric mean and the smallest of the ratios for each thread count.
# Defaults as in kiln bench: 3 warm-up runs, then at least 10 timed runs and at least
# --min-time 1 s; --iterations N times exactly N runs instead. KILN_CPU_ISA (portable, avx2,
# avx512) is passed on to kiln: it forces a lower instruction-set level (src/cpu/isa.h).
# --isa avx2 holds both engines to AVX2 on a machine with AVX-512: kiln with KILN_CPU_ISA=avx2,
# ONNX Runtime from build/peers-avx2, a copy whose CPU-feature probes see no AVX-512 state
# (made on first use by bench/ort_hold_avx2.py; ORT has no switch of its own).
# --check instead runs each model once in both (bench/ort_run.js, `kiln run --format npy
# --output-dir`) and compares every output with `kiln compare --rtol 1e-3 --atol 1e-4` (or the
# given --rtol / --atol: quantized models differ by a few quantization steps); --level L runs
# kiln's model optimized at L (`kiln run --level`; default: as written, no optimization).
# Needs scripts/install-peers.sh (onnxruntime-node) and a kiln build (default
# build/release/kiln, or --kiln PATH, or $KILN). Exits 1 if any model fails in either
# engine or (--check) any output differs.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$root/build/release/kiln}
threads=1
warmup=3
iterations=""
min_time=1
rounds=3
check=0
rtol=1e-3
atol=1e-4
run_level=()
isa=""
models=()

usage() {
    echo "usage: bench/compare.sh [--threads T[,T...]] [--warmup N] [--iterations N | --min-time S]" >&2
    echo "                        [--rounds R] [--kiln PATH] [--isa avx2]" >&2
    echo "                        [--check [--rtol R] [--atol A] [--level L]] [MODEL...]" >&2
    exit 2
}
need() { [ $# -ge 2 ] || { echo "compare.sh: $1 needs a value" >&2; usage; }; }
while [ $# -gt 0 ]; do
    case $1 in
        --threads) need "$@"; threads=$2; shift ;;
        --warmup) need "$@"; warmup=$2; shift ;;
        --iterations) need "$@"; iterations=$2; shift ;;
        --min-time) need "$@"; min_time=$2; shift ;;
        --rounds) need "$@"; rounds=$2; shift ;;
        --kiln) need "$@"; kiln=$2; shift ;;
        --isa) need "$@"; isa=$2; shift ;;
        --check) check=1 ;;
        --rtol) need "$@"; rtol=$2; shift ;;
        --atol) need "$@"; atol=$2; shift ;;
        --level) need "$@"; run_level=(--level "$2"); shift ;;
        -h|--help) sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
        -*) echo "compare.sh: unknown option '$1'" >&2; usage ;;
        *) models+=("$1") ;;
    esac
    shift
done
if [ ${#models[@]} -eq 0 ]; then
    shopt -s nullglob
    models=("$root"/build/bench-models/*.onnx)
    shopt -u nullglob
    if [ ${#models[@]} -eq 0 ]; then
        echo "compare.sh: no models in build/bench-models; run '/usr/bin/python3 bench/make_models.py'" >&2
        exit 1
    fi
fi

if [ -n "$isa" ]; then
    if [ "$isa" != avx2 ]; then
        echo "compare.sh: --isa takes avx2 (got '$isa')" >&2
        usage
    fi
    export KILN_CPU_ISA=avx2
    export KILN_PEERS_DIR="$root/build/peers-avx2"
    if [ ! -d "$KILN_PEERS_DIR" ]; then
        python3 "$root/bench/ort_hold_avx2.py" --to "$KILN_PEERS_DIR" >&2 || exit 1
    fi
fi

if ! command -v node >/dev/null 2>&1; then
    echo "compare.sh: node is not installed; run 'sh scripts/install-peers.sh'" >&2
    exit 1
fi
# Fails early, with install-peers.sh's name, when onnxruntime-node is missing.
node -e "require('$root/bench/ort_common.js').loadOrt()" 2>&1 | sed 's/^/compare.sh: /' >&2
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
ort_version=$(node -p "require('$root/bench/ort_common.js').loadOrt().version")

# Is kiln there, and does it have `bench`?
kiln_bench=1
kiln_note=""
if [ ! -x "$kiln" ]; then
    kiln_bench=0
    kiln_note="kiln not found at $kiln (build it, or pass --kiln PATH)"
elif [ $check -eq 0 ] && "$kiln" bench --help 2>&1 | grep -q "not implemented"; then
    kiln_bench=0
    kiln_note="'kiln bench' is not implemented yet in $kiln: the kiln column is skipped"
fi
if [ $check -eq 1 ] && [ ! -x "$kiln" ]; then
    echo "compare.sh: $kiln_note" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-compare.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
status=0
notes=()

# One line of an engine's stderr, for the notes under the table.
first_error() { grep -v '^\s*$' "$1" | grep -iv 'warning' | head -n 1 | cut -c1-300; }
# A field of a bench JSON file: latency_ms.median, load_ms, peak_rss_mb.
field_of() { node -p "JSON.parse(require('fs').readFileSync('$1','utf8')).$2" 2>/dev/null; }
# The median of numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
maximum() { printf '%s\n' "$@" | sort -g | tail -n 1; }
# Milliseconds with 3 significant digits or more: 0.148, 9.97, 102.2, 341.8.
ms() { awk -v x="$1" 'BEGIN { if (x < 1) printf "%.3f", x; else if (x < 100) printf "%.2f", x; else printf "%.1f", x }'; }

cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
cpus=$(nproc)
echo "Machine: $cpu, $cpus CPUs (nproc; lscpu: $(lscpu | sed -n 's/^Core(s) per socket:[[:space:]]*/cores per socket /p' | head -n 1), $(lscpu | sed -n 's/^Thread(s) per core:[[:space:]]*/threads per core /p' | head -n 1))"
echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "ONNX Runtime: onnxruntime-node $ort_version (CPU execution provider)${isa:+, held to AVX2 (bench/ort_hold_avx2.py)}"
if [ $check -eq 1 ]; then
    echo "Check: kiln run vs ONNX Runtime on the same generated inputs, kiln compare --rtol $rtol --atol $atol"
    echo
    echo "| model | output | result |"
    echo "|---|---|---|"
else
    if [ -n "$iterations" ]; then
        runs="$iterations runs"
    else
        runs="at least 10 runs and $min_time s"
    fi
    echo "Runs: $rounds rounds alternating the engines (kiln first in even rounds, ONNX Runtime in odd), each the median of $runs after $warmup warm-up runs; the median of the rounds' medians; one engine at a time"
    echo "kiln: engine built by 'kiln build' (default level), $("$kiln" --version 2>/dev/null)${KILN_CPU_ISA:+ (KILN_CPU_ISA=$KILN_CPU_ISA)}"
    [ -n "$kiln_note" ] && echo "Note: $kiln_note"
    echo
    echo "| model | threads | kiln median ms | ORT median ms | ORT/kiln | kiln load ms | ORT load ms | kiln peak MB | ORT peak MB |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
fi

# run_engine OK MEDIANS LOADS RSS LABEL OUT CMD...: one timed round of an engine on the
# current model and thread count (the loop's variables): CMD's --json on OUT.json, its
# median, load time and peak memory appended to the arrays named MEDIANS, LOADS and RSS; on
# failure the variable named OK becomes 0 and a note is kept.
run_engine() {
    local -n ok_=$1 med_=$2 load_=$3 rss_=$4
    local label=$5 out=$6
    shift 6
    [ "$ok_" -eq 1 ] || return 0
    if "$@" >"$out.json" 2>"$out.err"; then
        med_+=("$(field_of "$out.json" latency_ms.median)")
        load_+=("$(field_of "$out.json" load_ms)")
        rss_+=("$(field_of "$out.json" peak_rss_mb)")
    else
        ok_=0
        notes+=("$name: $label fails: $(first_error "$out.err")")
        status=1
    fi
}
run_kiln() { run_engine kok km kl kr "kiln bench" "$d/kiln" "$kiln" bench "$eng" "${inputs[@]}" "${opts[@]}"; }
run_ort() { run_engine oko om ol orr "ONNX Runtime" "$d/ort" node "$root/bench/ort_bench.js" "$m" "${inputs[@]}" "${opts[@]}"; }

for m in "${models[@]}"; do
    name=$(basename "$m" .onnx)
    d="$tmp/$name"
    mkdir -p "$d/in" "$d/ort" "$d/kiln"
    # Inputs, generated once and given to both engines, and ORT's outputs for --check.
    shape_opts=()
    prof=()
    if [ -f "${m%.onnx}.shapes" ]; then
        while IFS= read -r line; do
            [ -n "$line" ] || continue
            shape_opts+=(--shape "$line")
            prof+=(--profile "${line%%=*}=min:${line#*=},opt:${line#*=},max:${line#*=}")
        done < "${m%.onnx}.shapes"
    fi
    if ! node "$root/bench/ort_run.js" "$m" "${shape_opts[@]}" --save-inputs "$d/in" --output-dir "$d/ort" \
            >"$d/ort_run.out" 2>"$d/ort_run.err"; then
        notes+=("$name: ONNX Runtime fails: $(first_error "$d/ort_run.err")")
        status=1
        if [ $check -eq 1 ]; then
            echo "| $name | | ORT fails (see below) |"
        else
            echo "| $name | $threads | | ORT fails | |"
        fi
        continue
    fi
    inputs=()
    while IFS= read -r line; do
        inputs+=(--input "$line")
    done < <(sed -n 's/^input //p' "$d/ort_run.out")

    if [ $check -eq 1 ]; then
        if ! "$kiln" run "$m" "${run_level[@]}" "${inputs[@]}" --format npy --output-dir "$d/kiln" \
                >/dev/null 2>"$d/kiln_run.err"; then
            echo "| $name | | kiln fails (see below) |"
            notes+=("$name: kiln run fails: $(first_error "$d/kiln_run.err")")
            status=1
            continue
        fi
        while read -r _ k _ oname; do
            r=$("$kiln" compare "$d/kiln/output_$k.npy" "$d/ort/output_$k.npy" \
                    --rtol "$rtol" --atol "$atol" 2>&1 | head -n 1)
            [ "$r" = equal ] || status=1
            echo "| $name | $oname | $r |"
        done < <(grep '^output ' "$d/ort_run.out")
        continue
    fi

    for t in ${threads//,/ }; do
        opts=(--threads "$t" --warmup "$warmup" --min-time "$min_time" --json)
        [ -z "$iterations" ] || opts+=(--iterations "$iterations")
        eng="$d/$name-t$t.kiln"
        kok=$kiln_bench
        if [ $kok -eq 1 ] && ! "$kiln" build "$m" -o "$eng" --threads "$t" "${prof[@]}" \
                >/dev/null 2>"$d/kiln_build.err"; then
            kok=0
            notes+=("$name: kiln build fails: $(first_error "$d/kiln_build.err")")
            status=1
        fi
        oko=1
        km=(); om=(); kl=(); ol=(); kr=(); orr=()
        # Round r runs kiln then ONNX Runtime when r is even, the other way round when odd
        # (ABBA...), so that a drift of the machine's speed over the rounds falls on both.
        for ((r = 0; r < rounds; r++)); do
            if [ $((r % 2)) -eq 0 ]; then run_kiln; run_ort; else run_ort; run_kiln; fi
        done
        kmed="fails"; kload=""; krss=""
        [ $kiln_bench -eq 1 ] || kmed="—"
        if [ $kok -eq 1 ]; then
            kmed=$(median "${km[@]}"); kload=$(ms "$(median "${kl[@]}")"); krss=$(maximum "${kr[@]}")
        fi
        omed="fails"; oload=""; orss=""
        if [ $oko -eq 1 ]; then
            omed=$(median "${om[@]}"); oload=$(ms "$(median "${ol[@]}")"); orss=$(maximum "${orr[@]}")
        fi
        ratio="—"
        if [ $kok -eq 1 ] && [ $oko -eq 1 ]; then
            ratio=$(awk -v o="$omed" -v k="$kmed" 'BEGIN { if (k > 0) printf "%.2f", o / k }')
            echo "$t $ratio $name" >>"$tmp/ratios"
        fi
        case $kmed in fails|—) ;; *) kmed=$(ms "$kmed") ;; esac
        case $omed in fails) ;; *) omed=$(ms "$omed") ;; esac
        krss=${krss:+$(printf '%.0f' "$krss")}
        orss=${orss:+$(printf '%.0f' "$orss")}
        echo "| $name | $t | $kmed | $omed | $ratio | $kload | $oload | $krss | $orss |"
    done
done

if [ $check -eq 0 ] && [ -s "$tmp/ratios" ]; then
    echo
    for t in ${threads//,/ }; do
        awk -v t="$t" '$1 == t { n++; s += log($2); if (!n0 || $2 < lo) { lo = $2; who = $3; n0 = 1 } }
            END { if (n) printf "Threads %s: geometric mean of ORT/kiln over %d models %.2f; smallest %.2f (%s)\n", t, n, exp(s / n), lo, who }' "$tmp/ratios"
    done
fi
if [ ${#notes[@]} -gt 0 ]; then
    echo
    for n in "${notes[@]}"; do echo "- $n"; done
fi
exit $status
