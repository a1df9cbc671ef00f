#!/bin/sh
# Runs the ONNX conformance suite, adds newly passing cases to tests/onnx/passing.txt (the
# list only grows) and rewrites docs/conformance.md. Run after making more cases pass.
set -eu
cd "$(dirname "$0")/.."
ONNX_TESTS=${KILN_ONNX_TESTS:-$(pwd)/../shared/onnx-tests}
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DKILN_ONNX_TESTS="$ONNX_TESTS" >/dev/null
cmake --build build/release -j "$(nproc 2>/dev/null || echo 2)" --target kiln-conformance
build/release/kiln-conformance --data "$ONNX_TESTS" -j "$(nproc 2>/dev/null || echo 2)" \
    --write-passing tests/onnx/passing.txt --report docs/conformance.md
