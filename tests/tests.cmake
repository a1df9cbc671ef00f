# Tests. Unit tests: every tests/unit/test_*.c is one executable and one ctest test, linked
# with the shared scaffolding of tests/unit/support/ (checks, tensors, running one op, the
# ONNX test data: test_support.h; hand-written ModelProto bytes: test_pb.h, with the graph
# builder of the shape-inference tests on top, test_model.h; the optimizer tests' text
# form: test_text_model.h). The support files are not tests: they live in a folder of
# their own so the glob below does not pick them up.
add_library(kiln_test_support STATIC ${CMAKE_SOURCE_DIR}/tests/unit/support/test_support.c
            ${CMAKE_SOURCE_DIR}/tests/unit/support/test_pb.c
            ${CMAKE_SOURCE_DIR}/tests/unit/support/test_model.c
            ${CMAKE_SOURCE_DIR}/tests/unit/support/test_text_model.c)
target_include_directories(kiln_test_support PUBLIC ${CMAKE_SOURCE_DIR}/tests/unit/support)
target_link_libraries(kiln_test_support PUBLIC kiln_static)
target_compile_definitions(kiln_test_support PRIVATE KILN_ONNX_TESTS="${KILN_ONNX_TESTS}")

file(GLOB KILN_UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
foreach(src ${KILN_UNIT_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE kiln_test_support kiln_static)
  target_compile_definitions(${name} PRIVATE KILN_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
                             KILN_ONNX_TESTS="${KILN_ONNX_TESTS}")
  if(KILN_DNNL_FOUND)
    target_compile_definitions(${name} PRIVATE KILN_HAVE_DNNL=1)
  endif()
  add_test(NAME ${name} COMMAND ${name})
endforeach()

# kiln serve's parsers (config.pbtxt, the binary tensor format) and batcher are kiln_serve_core
# (cmake/serve.cmake), which needs no network library.
foreach(t test_serve_pbtxt test_serve_codec test_serve_batcher)
  target_link_libraries(${t} PRIVATE kiln_serve_core)
endforeach()

# The channels-last Conv again with the CPU kernels forced to the portable path (its
# "direct" variant instead of oneDNN).
add_test(NAME test_conv_nhwc_portable COMMAND test_conv_nhwc)
set_tests_properties(test_conv_nhwc_portable PROPERTIES ENVIRONMENT KILN_CPU_ISA=portable)
# and with oneDNN held to AVX2 (its other convolution kernels)
add_test(NAME test_conv_nhwc_avx2 COMMAND test_conv_nhwc)
set_tests_properties(test_conv_nhwc_avx2 PROPERTIES ENVIRONMENT KILN_CPU_ISA=avx2)
# and with the exp/erf/tanh activations forced into oneDNN's post-ops and out of them (the
# default depends on the CPU's vendor: conv_nhwc.c, onednn_exp_acts)
add_test(NAME test_conv_nhwc_act_onednn COMMAND test_conv_nhwc)
set_tests_properties(test_conv_nhwc_act_onednn PROPERTIES ENVIRONMENT KILN_CONV_ACT=onednn)
add_test(NAME test_conv_nhwc_act_kiln COMMAND test_conv_nhwc)
set_tests_properties(test_conv_nhwc_act_kiln PROPERTIES ENVIRONMENT KILN_CONV_ACT=kiln)
# The channels-last pools' row kernel at each compiled level below the best.
add_test(NAME test_pool_nhwc_portable COMMAND test_pool_nhwc)
set_tests_properties(test_pool_nhwc_portable PROPERTIES ENVIRONMENT KILN_CPU_ISA=portable)
add_test(NAME test_pool_nhwc_avx2 COMMAND test_pool_nhwc)
set_tests_properties(test_pool_nhwc_avx2 PROPERTIES ENVIRONMENT KILN_CPU_ISA=avx2)
# kiln.SqueezeExcite's loops (src/cpu/isa/pool_nhwc.c) likewise.
add_test(NAME test_se_block_portable COMMAND test_se_block)
set_tests_properties(test_se_block_portable PROPERTIES ENVIRONMENT KILN_CPU_ISA=portable)
add_test(NAME test_se_block_avx2 COMMAND test_se_block)
set_tests_properties(test_se_block_avx2 PROPERTIES ENVIRONMENT KILN_CPU_ISA=avx2)
# kiln.MBConv's depthwise row kernel (src/cpu/isa/mbconv.c) and its GEMM at each level.
add_test(NAME test_mbconv_portable COMMAND test_mbconv)
set_tests_properties(test_mbconv_portable PROPERTIES ENVIRONMENT KILN_CPU_ISA=portable)
add_test(NAME test_mbconv_avx2 COMMAND test_mbconv)
set_tests_properties(test_mbconv_avx2 PROPERTIES ENVIRONMENT KILN_CPU_ISA=avx2)
# kiln.ConcatScaleBias at every level (its activation loops are per level).
add_test(NAME test_concat_sb_portable COMMAND test_concat_sb)
set_tests_properties(test_concat_sb_portable PROPERTIES ENVIRONMENT KILN_CPU_ISA=portable)
add_test(NAME test_concat_sb_avx2 COMMAND test_concat_sb)
set_tests_properties(test_concat_sb_avx2 PROPERTIES ENVIRONMENT KILN_CPU_ISA=avx2)
# The conv1x1_mm pass runs only at AVX-512: at AVX2 the same model keeps its convolutions.
add_test(NAME test_conv1x1_mm_avx2 COMMAND test_conv1x1_mm)
set_tests_properties(test_conv1x1_mm_avx2 PROPERTIES ENVIRONMENT KILN_CPU_ISA=avx2)
# ConvTranspose's prepared oneDNN variant likewise: portable takes the reference variant.
add_test(NAME test_rnn_fast_avx2 COMMAND test_rnn_fast)
set_tests_properties(test_rnn_fast_avx2 PROPERTIES ENVIRONMENT KILN_CPU_ISA=avx2)
add_test(NAME test_rnn_fast_portable COMMAND test_rnn_fast)
set_tests_properties(test_rnn_fast_portable PROPERTIES ENVIRONMENT KILN_CPU_ISA=portable)
add_test(NAME test_conv_transpose_fast_avx2 COMMAND test_conv_transpose_fast)
set_tests_properties(test_conv_transpose_fast_avx2 PROPERTIES ENVIRONMENT KILN_CPU_ISA=avx2)
add_test(NAME test_conv_transpose_fast_portable COMMAND test_conv_transpose_fast)
set_tests_properties(test_conv_transpose_fast_portable PROPERTIES ENVIRONMENT KILN_CPU_ISA=portable)

# MatMulInteger's prepared int8 product at each compiled level below the best: both take
# kiln's own int8 kernel (oneDNN held to AVX2 has no VNNI; cpu/int8_gemm_isa.h), compared
# exactly.
add_test(NAME test_int8_fast_portable COMMAND test_int8_fast)
set_tests_properties(test_int8_fast_portable PROPERTIES ENVIRONMENT KILN_CPU_ISA=portable)
add_test(NAME test_int8_fast_avx2 COMMAND test_int8_fast)
set_tests_properties(test_int8_fast_avx2 PROPERTIES ENVIRONMENT KILN_CPU_ISA=avx2)

# kiln.FusedMatMul with kiln's GEMM's epilogue at AVX2 (its 6 x 16 tile), and at the portable
# level, where MatMul keeps oneDNN or kiln_sgemm and fused.c's pass after the product.
add_test(NAME test_fused_pgemm_avx2 COMMAND test_fused_pgemm)
set_tests_properties(test_fused_pgemm_avx2 PROPERTIES ENVIRONMENT KILN_CPU_ISA=avx2)
add_test(NAME test_fused_pgemm_portable COMMAND test_fused_pgemm)
set_tests_properties(test_fused_pgemm_portable PROPERTIES ENVIRONMENT KILN_CPU_ISA=portable)

# test_prepared_conv_gemm checks the blobs and variant names of oneDNN's prepacked matmul:
# pinned to it (KILN_MATMUL_PACKED=onednn: kiln before its own GEMM), since the default now
# takes kiln's GEMM (cpu/pgemm.h) for few rows; test_pgemm tests that one.
set_tests_properties(test_prepared_conv_gemm PROPERTIES ENVIRONMENT KILN_MATMUL_PACKED=onednn)

# CLI tests: every tests/cli/test_*.sh runs with the kiln binary, the source folder and the
# ONNX test data folder as arguments; exit 0 = pass.
file(GLOB KILN_CLI_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/cli/test_*.sh)
foreach(script ${KILN_CLI_TESTS})
  get_filename_component(name ${script} NAME_WE)
  add_test(NAME cli_${name} COMMAND sh ${script} $<TARGET_FILE:kiln> ${CMAKE_SOURCE_DIR} ${KILN_ONNX_TESTS})
endforeach()

# ONNX backend conformance: every case under node/, simple/, pytorch-operator/; the cases in
# tests/onnx/passing.txt must pass. The report goes into the build folder.
add_executable(kiln-conformance ${CMAKE_SOURCE_DIR}/tests/onnx/conformance.c
               ${CMAKE_SOURCE_DIR}/tests/onnx/cases.c)
target_link_libraries(kiln-conformance PRIVATE kiln_static)
target_compile_definitions(kiln-conformance PRIVATE KILN_ONNX_TESTS="${KILN_ONNX_TESTS}")
add_test(NAME onnx_conformance
         COMMAND kiln-conformance --data ${KILN_ONNX_TESTS} -j 2
                 --passing ${CMAKE_SOURCE_DIR}/tests/onnx/passing.txt
                 --report ${CMAKE_BINARY_DIR}/conformance.md)
# The same cases with the CPU kernels forced down to AVX2 and to the portable C path
# (src/cpu/isa.h): every compiled variant must pass, whatever CPU runs the tests.
foreach(isa avx2 portable)
  add_test(NAME onnx_conformance_isa_${isa}
           COMMAND kiln-conformance --data ${KILN_ONNX_TESTS} -j 2
                   --passing ${CMAKE_SOURCE_DIR}/tests/onnx/passing.txt
                   --report ${CMAKE_BINARY_DIR}/conformance_isa_${isa}.md)
  set_tests_properties(onnx_conformance_isa_${isa} PROPERTIES ENVIRONMENT KILN_CPU_ISA=${isa})
endforeach()
# The same cases after a trip through the ONNX writer (save to bytes, load back).
add_test(NAME onnx_conformance_roundtrip
         COMMAND kiln-conformance --data ${KILN_ONNX_TESTS} -j 2 --roundtrip
                 --passing ${CMAKE_SOURCE_DIR}/tests/onnx/passing.txt
                 --report ${CMAKE_BINARY_DIR}/conformance_roundtrip.md)
# The same cases after converting every model below opset 18 to opset 18 (and writing it),
# except the reviewed refusals of tests/onnx/convert_refused.txt.
add_test(NAME onnx_conformance_opset18
         COMMAND kiln-conformance --data ${KILN_ONNX_TESTS} -j 2 --opset 18 --roundtrip
                 --refused ${CMAKE_SOURCE_DIR}/tests/onnx/convert_refused.txt
                 --passing ${CMAKE_SOURCE_DIR}/tests/onnx/passing.txt
                 --report ${CMAKE_BINARY_DIR}/conformance_opset18.md)
# The same cases optimized at each level (kiln_model_optimize, keep_fused on), then written
# and loaded back: every pass must leave the outputs equal, and its result writable.
foreach(level basic extended layout)
  add_test(NAME onnx_conformance_${level}
           COMMAND kiln-conformance --data ${KILN_ONNX_TESTS} -j 2 --level ${level} --roundtrip
                   --passing ${CMAKE_SOURCE_DIR}/tests/onnx/passing.txt
                   --report ${CMAKE_BINARY_DIR}/conformance_${level}.md)
endforeach()

# Shape inference against the same cases: inferred output types must equal the actual output
# shapes (inputs fixed to the test data) and the declared ones; the cases in
# tests/onnx/shapes_passing.txt must pass.
add_executable(kiln-shape-conformance ${CMAKE_SOURCE_DIR}/tests/onnx/shape_conformance.c
               ${CMAKE_SOURCE_DIR}/tests/onnx/cases.c)
target_link_libraries(kiln-shape-conformance PRIVATE kiln_static)
target_compile_definitions(kiln-shape-conformance PRIVATE KILN_ONNX_TESTS="${KILN_ONNX_TESTS}")
add_test(NAME onnx_shape_conformance
         COMMAND kiln-shape-conformance --data ${KILN_ONNX_TESTS} -j 2
                 --passing ${CMAKE_SOURCE_DIR}/tests/onnx/shapes_passing.txt
                 --report ${CMAKE_BINARY_DIR}/shape_conformance.md)

# Fuzz targets (libFuzzer, option KILN_FUZZ) and the corpus replay tests (always).
if(EXISTS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz.cmake)
  include(${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz.cmake)
endif()

# A client of the shared library that includes only kiln.h.
add_executable(test_public_api ${CMAKE_SOURCE_DIR}/tests/api/test_public_api.c)
target_link_libraries(test_public_api PRIVATE kiln_shared)
target_compile_definitions(test_public_api PRIVATE KILN_ONNX_TESTS="${KILN_ONNX_TESTS}"
                           KILN_SOURCE_DIR="${CMAKE_SOURCE_DIR}" KILN_BINARY_DIR="${CMAKE_BINARY_DIR}")
add_test(NAME test_public_api COMMAND test_public_api)

# Plugins: the libraries test_plugin loads (tests/plugin/plugins.cmake).
include(${CMAKE_SOURCE_DIR}/tests/plugin/plugins.cmake)

# Graphviz's font stack keeps caches for the process (tests/lsan.supp).
set_tests_properties(test_draw cli_test_graph PROPERTIES
                     ENVIRONMENT "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0")

# ---- engine examples (examples/examples.cmake) ---------------------------------------------
# load_and_run, concurrent_contexts and async_enqueue run on the tiny model that
# tests/examples/make_tiny_model.c writes, and once more on their embedded copy of it (no
# model path), checking the lines they print; example_tiny_model_header fails when the
# embedded bytes (examples/tiny_model.h) are not what the generator writes today.
add_executable(make_tiny_model ${CMAKE_SOURCE_DIR}/tests/examples/make_tiny_model.c)
target_link_libraries(make_tiny_model PRIVATE kiln_test_support)
add_test(NAME example_tiny_model COMMAND make_tiny_model --onnx ${CMAKE_BINARY_DIR}/example_tiny.onnx)
set_tests_properties(example_tiny_model PROPERTIES FIXTURES_SETUP example_tiny)
add_test(NAME example_tiny_model_header
         COMMAND make_tiny_model --check ${CMAKE_SOURCE_DIR}/examples/tiny_model.h)
set(kiln_run_example sh ${CMAKE_SOURCE_DIR}/tests/examples/run_example.sh)
set(kiln_tiny ${CMAKE_BINARY_DIR}/example_tiny.onnx)
add_test(NAME example_load_and_run
         COMMAND ${kiln_run_example} $<TARGET_FILE:example_load_and_run> ${kiln_tiny} --
                 "model: ${kiln_tiny}, 1 input(s), 1 output(s)"
                 "input 'X': float32[N,4], running with [2,4]"
                 "output 'Y': float32[2,4] = 0 0 1 2 3 4 5 6")
add_test(NAME example_load_and_run_batch3
         COMMAND ${kiln_run_example} $<TARGET_FILE:example_load_and_run> ${kiln_tiny} 3 --
                 "output 'Y': float32[3,4] = 0 0 1 2 3 4 5 6 0 0 1 2")
add_test(NAME example_load_and_run_embedded
         COMMAND ${kiln_run_example} $<TARGET_FILE:example_load_and_run> --
                 "model: (embedded tiny model), 1 input(s), 1 output(s)"
                 "output 'Y': float32[2,4] = 0 0 1 2 3 4 5 6")
add_test(NAME example_concurrent_contexts
         COMMAND ${kiln_run_example} $<TARGET_FILE:example_concurrent_contexts> ${kiln_tiny} 8 300 --
                 "8 threads x 300 runs, one context each: all 2400 results identical"
                 "output 'Y': float32[2,4] = 0 0 1 2 3 4 5 6")
add_test(NAME example_concurrent_contexts_embedded
         COMMAND ${kiln_run_example} $<TARGET_FILE:example_concurrent_contexts> --
                 "4 threads x 200 runs, one context each: all 800 results identical"
                 "output 'Y': float32[2,4] = 0 0 1 2 3 4 5 6")
add_test(NAME example_async_enqueue
         COMMAND ${kiln_run_example} $<TARGET_FILE:example_async_enqueue> ${kiln_tiny} --
                 "queued 4 runs" "run 0 done: ok" "run 1 done: ok" "run 2 done: ok" "run 3 done: ok"
                 "output 'Y': float32[1,4] = 0 0 1 2"
                 "output 'Y': float32[3,4] = 0 0 1 2 3 4 5 6 0 0 1 2"
                 "output 'Y': float32[4,4] = 0 0 1 2 3 4 5 6 0 0 1 2 3 4 5 6")
add_test(NAME example_async_enqueue_embedded
         COMMAND ${kiln_run_example} $<TARGET_FILE:example_async_enqueue> --
                 "run 3 done: ok" "output 'Y': float32[2,4] = 0 0 1 2 3 4 5 6")
add_test(NAME example_build_then_load
         COMMAND ${kiln_run_example} $<TARGET_FILE:example_build_then_load> ${CMAKE_BINARY_DIR}/example_tiny.kiln
                 ${kiln_tiny} 3 --
                 "saved ${CMAKE_BINARY_DIR}/example_tiny.kiln"
                 "output 'Y': float32[3,4] = 0 0 1 2 3 4 5 6 0 0 1 2")
set_tests_properties(example_load_and_run example_load_and_run_batch3 example_concurrent_contexts
                     example_async_enqueue example_build_then_load PROPERTIES FIXTURES_REQUIRED example_tiny)
# ---- end of engine examples ----------------------------------------------------------------

# kiln serve's gRPC endpoint (cmake/serve.cmake sets KILN_HAVE_GRPC): a C client over the
# same libraries (libnghttp2, protobuf-c), driven by tests/cli/serve_grpc.sh.
if(KILN_HAVE_GRPC)
  add_executable(test_serve_grpc_client ${CMAKE_SOURCE_DIR}/tests/serve/grpc_client.c)
  target_link_libraries(test_serve_grpc_client PRIVATE kiln_serve_proto m)
  add_test(NAME cli_test_serve_grpc
           COMMAND sh ${CMAKE_SOURCE_DIR}/tests/cli/serve_grpc.sh $<TARGET_FILE:kiln> ${CMAKE_SOURCE_DIR}
                   $<TARGET_FILE:test_serve_grpc_client>)
endif()

# kiln.QConv / kiln.QAdd (static QDQ models) at each compiled level below the best: QConv
# takes the reference (no exact oneDNN int8 kernels there), still compared exactly.
add_test(NAME test_qdq_kernels_portable COMMAND test_qdq_kernels)
set_tests_properties(test_qdq_kernels_portable PROPERTIES ENVIRONMENT KILN_CPU_ISA=portable)
add_test(NAME test_qdq_kernels_avx2 COMMAND test_qdq_kernels)
set_tests_properties(test_qdq_kernels_avx2 PROPERTIES ENVIRONMENT KILN_CPU_ISA=avx2)
# and with oneDNN held to AVX-512 VNNI: QConv's non-AMX kernels (the variant prepare picks
# for thin convolutions), checked bit for bit the same way.
add_test(NAME test_qdq_kernels_vnni COMMAND test_qdq_kernels)
set_tests_properties(test_qdq_kernels_vnni PROPERTIES ENVIRONMENT ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI)
