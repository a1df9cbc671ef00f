# tests/fuzz/fuzz.cmake: kiln's fuzz targets (docs/fuzzing.md).
#
# Always, with any compiler: one replay executable per target (tests/fuzz/replay.c linked
# with tests/fuzz/fuzz_<target>.c), registered as the ctest test fuzz_replay_<target>, which
# feeds it every file of tests/fuzz/corpus/<target>/. Run the test suite under
# KILN_SANITIZE=ON to replay the corpus with ASan and UBSan.
#
# With -DKILN_FUZZ=ON (clang, together with -DKILN_SANITIZE=ON): libkiln is compiled with
# libFuzzer's coverage instrumentation and each target is also built as a libFuzzer binary
# fuzz_<target>. scripts/fuzz.sh does this and runs them.
option(KILN_FUZZ "Build the libFuzzer targets (clang; needs KILN_SANITIZE=ON)" OFF)

set(KILN_FUZZ_TARGETS load value engine)
set(KILN_FUZZ_DIR ${CMAKE_SOURCE_DIR}/tests/fuzz)
# kiln serve's config.pbtxt reader (kiln_serve_core, no dependency) and, when the server is
# built (libmicrohttpd, jansson), its inference request decoder (tools/serve/infer.c with
# the scheduler it references; the harness stubs the statistics and the log).
list(APPEND KILN_FUZZ_TARGETS serve_pbtxt)
set(KILN_FUZZ_LIBS_serve_pbtxt kiln_serve_core)
if(KILN_SERVE_DEPS_FOUND)
  list(APPEND KILN_FUZZ_TARGETS serve_infer)
  set(KILN_FUZZ_SRC_serve_infer ${KILN_SERVE_DIR}/infer.c ${KILN_SERVE_DIR}/sched.c)
  set(KILN_FUZZ_LIBS_serve_infer kiln_serve_core PkgConfig::KILN_SERVE_DEPS)
endif()

foreach(t ${KILN_FUZZ_TARGETS})
  add_executable(fuzz_replay_${t} ${KILN_FUZZ_DIR}/replay.c ${KILN_FUZZ_DIR}/fuzz_${t}.c ${KILN_FUZZ_SRC_${t}})
  target_link_libraries(fuzz_replay_${t} PRIVATE kiln_static ${KILN_FUZZ_LIBS_${t}})
  target_compile_definitions(fuzz_replay_${t} PRIVATE KILN_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_test(NAME fuzz_replay_${t} COMMAND fuzz_replay_${t} ${KILN_FUZZ_DIR}/corpus/${t})
  set_tests_properties(fuzz_replay_${t} PROPERTIES TIMEOUT 600)
endforeach()

if(KILN_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "KILN_FUZZ needs clang (libFuzzer): configure with CC=clang")
  endif()
  if(NOT KILN_SANITIZE)
    message(FATAL_ERROR "KILN_FUZZ needs -DKILN_SANITIZE=ON (the fuzzers run under ASan+UBSan)")
  endif()
  # Coverage feedback from the library itself, not only from the harness.
  target_compile_options(kiln_objs PRIVATE -fsanitize=fuzzer-no-link)
  target_compile_options(kiln_serve_core PRIVATE -fsanitize=fuzzer-no-link)
  foreach(t ${KILN_FUZZ_TARGETS})
    add_executable(fuzz_${t} ${KILN_FUZZ_DIR}/fuzz_${t}.c ${KILN_FUZZ_SRC_${t}})
    target_compile_options(fuzz_${t} PRIVATE -fsanitize=fuzzer)
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(fuzz_${t} PRIVATE kiln_static ${KILN_FUZZ_LIBS_${t}})
    target_compile_definitions(fuzz_${t} PRIVATE KILN_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  endforeach()
endif()
