#!/bin/sh
# Runs the shape-inference conformance harness, adds newly passing cases to
# tests/onnx/shapes_passing.txt (the list only grows) and rewrites docs/shape-conformance.md.
set -eu
cd "$(dirname "$0")/.."
ONNX_TESTS=${KILN_ONNX_TESTS:-$(pwd)/../shared/onnx-tests}
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DKILN_ONNX_TESTS="$ONNX_TESTS" >/dev/null
cmake --build build/release -j "$(nproc 2>/dev/null || echo 2)" --target kiln-shape-conformance
build/release/kiln-shape-conformance --data "$ONNX_TESTS" -j "$(nproc 2>/dev/null || echo 2)" \
    --write-passing tests/onnx/shapes_passing.txt --report docs/shape-conformance.md
