#!/bin/bash
# bench/check_serve.sh: does `kiln serve` answer the model set like `kiln run`? Serves every
# model of the set (auto-completed configs: no config.pbtxt) from one repository and sends
# each its inputs (NAME/inputs/input_N.npy, written by bench/make_refs.sh) over HTTP as JSON
# and as binary tensors, over HTTP with curl, and over gRPC (tests/serve/grpc_client.c), and
# compares every output with `kiln run --level extended` on the same inputs
# (tests/serve/compare.py; bit for bit unless --rtol/--atol are given). See docs/serve.md.
#
#   bench/check_serve.sh [--kiln PATH] [--models DIR] [--rtol R] [--atol A] [NAME...]
#
# NAME defaults to every DIR/*.onnx with a DIR/NAME/inputs folder (DIR: build/bench-models).
# The repository links to the model files (nothing is copied). Prints compare.py's line per
# model and front, then a Markdown table: | model | inputs | HTTP JSON | HTTP binary | curl |
# gRPC |, each cell "=" (bit for bit), the max abs difference, or FAIL. Exits 1 if any
# differs or fails.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$root/build/release/kiln}
models_dir=$root/build/bench-models
tol=()
names=()
while [ $# -gt 0 ]; do
    case $1 in
        --kiln) kiln=$2; shift ;;
        --models) models_dir=$2; shift ;;
        --rtol|--atol) tol+=("$1" "$2"); shift ;;
        -h|--help) sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
        -*) echo "check_serve.sh: unknown option '$1'" >&2; exit 2 ;;
        *) names+=("$1") ;;
    esac
    shift
done
[ -x "$kiln" ] || { echo "check_serve.sh: kiln not found at $kiln (build it, or pass --kiln PATH)" >&2; exit 1; }
client=$(dirname "$kiln")/test_serve_grpc_client
if [ ${#names[@]} -eq 0 ]; then
    for m in "$models_dir"/*.onnx; do
        n=$(basename "$m" .onnx)
        [ -d "$models_dir/$n/inputs" ] && names+=("$n")
    done
fi
[ ${#names[@]} -gt 0 ] || { echo "check_serve.sh: no models with inputs in $models_dir" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-check-serve.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT INT TERM
specs=()
for n in "${names[@]}"; do
    mkdir -p "$work/repo/$n/1"
    ln -s "$(cd "$models_dir" && pwd)/$n.onnx" "$work/repo/$n/1/model.onnx"
    specs+=("$n=$models_dir/$n.onnx,$models_dir/$n/inputs")
done
start=$(date +%s)
"$kiln" serve --model-repository "$work/repo" --http-port 0 --grpc-port 0 --metrics-port 0 \
    --http-address 127.0.0.1 --max-json-bytes $((256 << 20)) --max-request-bytes $((512 << 20)) \
    > "$work/server.out" 2> "$work/server.err" &
pid=$!
while ! grep -q '^kiln serve: ready' "$work/server.out" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
        cat "$work/server.err" >&2
        echo "check_serve.sh: the server did not start" >&2
        exit 1
    fi
    sleep 0.5
done
http=$(sed -n 's/^kiln serve: HTTP on .*:\([0-9][0-9]*\)$/\1/p' "$work/server.out")
grpc=$(sed -n 's/^kiln serve: gRPC on .*:\([0-9][0-9]*\)$/\1/p' "$work/server.out")
echo "kiln serve: ${#names[@]} models loaded in $(($(date +%s) - start)) s" >&2
grpc_args=()
if [ -n "$grpc" ] && [ -x "$client" ]; then
    grpc_args=(--grpc-port "$grpc" --grpc-client "$client")
else
    echo "check_serve.sh: no gRPC (server without it, or $client not built): HTTP only" >&2
fi
mkdir -p "$work/cmp"
rc=0
python3 "$root/tests/serve/compare.py" --kiln "$kiln" --http-port "$http" "${grpc_args[@]}" --curl \
    --work "$work/cmp" "${tol[@]}" "${specs[@]}" | tee "$work/compare.out" || rc=1
kill -TERM "$pid"
wait "$pid" || { echo "check_serve.sh: the server exited $? after SIGTERM" >&2; rc=1; }
pid=

echo
echo "| model | inputs | HTTP JSON | HTTP binary | curl | gRPC |"
echo "|---|---|---|---|---|---|"
for n in "${names[@]}"; do
    ins=$(grep -m1 "^$n http-json: " "$work/compare.out" | sed -n 's/.*(inputs \([^;]*\);.*/\1/p')
    row="| $n | ${ins:-?} |"
    for front in http-json http-binary curl grpc; do
        line=$(grep -m1 "^$n $front: " "$work/compare.out")
        if [ -z "$line" ]; then cell="not run"
        elif ! echo "$line" | grep -q ": ok ("; then cell="FAIL"
        elif ! echo "$line" | grep -q "max |diff|"; then cell="="
        else cell=$(echo "$line" | grep -o 'max |diff| [0-9.e+-]*' | sort -g -k3 | tail -1 | sed 's/max |diff| //')
        fi
        row="$row $cell |"
    done
    echo "$row"
done
exit $rc
