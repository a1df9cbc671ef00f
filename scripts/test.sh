#!/bin/sh
# Runs every kiln test: builds with warnings as errors three times (gcc optimized, clang,
# gcc with AddressSanitizer + UndefinedBehaviorSanitizer) and runs the ctest suite on each
# (unit tests, CLI tests, ONNX conformance with the enforced passing list; gcc's build also
# runs conformance after the writer's round trip, after opset conversion and at every
# optimizer level, and shape conformance; see the -E lists below for the others); then a
# ThreadSanitizer build of the threaded parts runs their tests.
# Complete on its own on a fresh Debian 12 machine (installs missing tools as root).
set -eu
cd "$(dirname "$0")/.."
KILN_NEED_CLANG=1 sh scripts/install-deps.sh
JOBS=$(nproc 2>/dev/null || echo 2)
# The ONNX backend test data: $KILN_ONNX_TESTS, else ../shared/onnx-tests next to the
# checkout. Missing data fails the conformance test (it is never skipped).
ONNX_TESTS=${KILN_ONNX_TESTS:-$(pwd)/../shared/onnx-tests}
[ -d "$ONNX_TESTS/node" ] || echo "kiln: warning: no ONNX test data at $ONNX_TESTS (set KILN_ONNX_TESTS)" >&2

cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DKILN_WERROR=ON \
      -DKILN_ONNX_TESTS="$ONNX_TESTS" >/dev/null
cmake --build build/release -j "$JOBS"
(cd build/release && ctest --output-on-failure -j "$JOBS")

CC=clang cmake -S . -B build/clang -DCMAKE_BUILD_TYPE=Release -DKILN_WERROR=ON \
      -DKILN_ONNX_TESTS="$ONNX_TESTS" >/dev/null
cmake --build build/clang -j "$JOBS"
# The conformance variants (after the writer's round trip, opset conversion, each optimizer
# level) and shape conformance run the same library code as gcc's build did; clang's build
# runs everything else.
(cd build/clang && ctest --output-on-failure -j "$JOBS" \
    -E '^(onnx_conformance_(roundtrip|opset18|basic|extended|layout)|onnx_shape_conformance)$')

cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_WERROR=ON -DKILN_SANITIZE=ON \
      -DKILN_ONNX_TESTS="$ONNX_TESTS" >/dev/null
cmake --build build/asan -j "$JOBS"
# Under the sanitizers: everything but the conformance variants whose code is covered
# otherwise: extended runs the optimizer (basic's passes too) and the writer's round trip on
# every case; test_onnx_write round-trips every ONNX test model, the converter and the shape
# rules have their unit tests here (test_convert, test_infer*), and layout only adds an
# analysis. Keeps CI's sanitizer stage to two full conformance runs. python_tests is left out
# too: an ASan'd extension needs the sanitizer runtime preloaded into python3 (the release
# and clang builds run it).
(cd build/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j "$JOBS" \
    -E '^(onnx_conformance_(roundtrip|basic|layout|opset18)|onnx_shape_conformance|python_tests)$')

# ThreadSanitizer on what runs threads: the pool and the parallel GEMM (test_pool), the
# stages of one pool job (test_stages) and the recurrent layers on them (test_rnn_fast), the
# threaded kernels (test_par_ops, test_par_conv_gemm, the fused ops incl. attention:
# test_fused_ops, the channels-last convolution's slices and contexts: test_conv_nhwc), a
# multi-threaded `kiln run` (cli_test_threads), the server's queues, batcher and instances
# (cli_test_serve, the gRPC front: cli_test_serve_grpc, a repository of models with and
# without config.pbtxt: cli_test_serve_repo, curl: cli_test_serve_curl), the engine runtime
# (test_engine: eight contexts on one engine, one session on four threads, asynchronous runs;
# test_plan: planned runs) and the threaded examples on the public API.
cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_WERROR=ON -DKILN_TSAN=ON \
      -DKILN_ONNX_TESTS="$ONNX_TESTS" >/dev/null
cmake --build build/tsan -j "$JOBS" --target test_pool test_stages test_rnn_fast test_par_ops test_par_conv_gemm test_fused_ops test_conv_nhwc kiln test_serve_grpc_client \
      test_engine test_plan example_concurrent_contexts example_async_enqueue
(cd build/tsan && TSAN_OPTIONS=halt_on_error=1 \
    ctest --output-on-failure -j "$JOBS" -R '^(test_pool|test_stages|test_rnn_fast|test_par_ops|test_par_conv_gemm|test_fused_ops|test_conv_nhwc|cli_test_threads|cli_test_serve|cli_test_serve_grpc|cli_test_serve_repo|cli_test_serve_curl|test_engine|test_plan|example_(concurrent_contexts|async_enqueue)_embedded)$')
echo "kiln: all tests passed"
