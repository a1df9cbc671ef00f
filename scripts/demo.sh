#!/bin/sh
# demo.sh: kiln's end-to-end demo: classify handwritten digits with a small CNN.
#
# demo/digits_cnn.onnx was trained in PyTorch on scikit-learn's 8x8 digits and exported to
# ONNX by demo/train_digits.py (see demo/ACCURACY.md). This script builds kiln if needed,
# runs the model on 16 held-back test images (demo/test_images.npy) and prints, per image,
# the predicted and the true digit (demo/test_labels.txt), then the number correct.
#
# Works on a fresh Debian 12 machine: installs cmake, gcc and make with apt-get if they are
# missing (as root, or through sudo). Run from anywhere: sh scripts/demo.sh
# Environment: BUILD_DIR (default build/release), JOBS (parallel build jobs, default 2).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build/release}
JOBS=${JOBS:-2}

die() {
    echo "demo: $*" >&2
    exit 1
}

# --- build tools -------------------------------------------------------------------------
missing=""
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
command -v gcc >/dev/null 2>&1 || missing="$missing gcc libc6-dev"
command -v make >/dev/null 2>&1 || missing="$missing make"
if [ -n "$missing" ]; then
    echo "demo: installing$missing"
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=sudo
    else
        die "missing$missing; install them (apt-get install$missing) or run as root"
    fi
    $SUDO apt-get update -q >/dev/null || die "apt-get update failed"
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing >/dev/null ||
        die "apt-get install$missing failed"
fi

# --- build -------------------------------------------------------------------------------
# The build's output is shown only when it fails.
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT INT TERM
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    echo "demo: configuring and building kiln in $BUILD_DIR"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >"$LOG" 2>&1 ||
        { cat "$LOG" >&2; die "cmake configure failed"; }
fi
# Always ask the build tool: it does nothing when kiln is up to date, and a stale binary
# would run old code.
cmake --build "$BUILD_DIR" --target kiln -j "$JOBS" >"$LOG" 2>&1 ||
    { cat "$LOG" >&2; die "build failed"; }
KILN=$BUILD_DIR/kiln
[ -x "$KILN" ] || die "$KILN was not built"

# --- run ---------------------------------------------------------------------------------
MODEL=$ROOT/demo/digits_cnn.onnx
IMAGES=$ROOT/demo/test_images.npy
LABELS=$ROOT/demo/test_labels.txt
for f in "$MODEL" "$IMAGES" "$LABELS"; do
    [ -f "$f" ] || die "$f is missing"
done
OUT=$(mktemp)
trap 'rm -f "$LOG" "$OUT"' EXIT INT TERM
# --print-all prints every element of each output as "  values: v0 v1 ..." under the
# output's "name: type[shape]" line.
"$KILN" run "$MODEL" --input "image=$IMAGES" --print-all >"$OUT" || die "kiln run failed"

awk -v labels="$LABELS" '
    /^label: / { grab = 1; next }
    grab && /^  values:/ { for (i = 2; i <= NF; i++) pred[n++] = $i; grab = 0 }
    END {
        if (n == 0) { print "demo: no label output from kiln" > "/dev/stderr"; exit 1 }
        while ((getline t < labels) > 0) truth[m++] = t
        if (m != n) { printf "demo: %d predictions for %d labels\n", n, m > "/dev/stderr"; exit 1 }
        ok = 0
        for (i = 0; i < n; i++) {
            printf "image %d: predicted %s, true %s%s\n", i, pred[i], truth[i],
                   pred[i] == truth[i] ? "" : "   <-- wrong"
            ok += pred[i] == truth[i]
        }
        printf "%d/%d correct\n", ok, n
    }' "$OUT"
