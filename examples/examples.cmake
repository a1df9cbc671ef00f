# examples/examples.cmake: the C examples, public API only (include/kiln.h), linked with the
# shared library like any client. Included from CMakeLists.txt; their tests are in
# tests/tests.cmake. Keep one block per group of examples.

# ---- engine examples: load_and_run, concurrent_contexts, async_enqueue, build_then_load------------------
# Each takes a model path, or runs the tiny model embedded in examples/tiny_model.h (written
# by tests/examples/make_tiny_model.c).
foreach(kiln_example load_and_run concurrent_contexts async_enqueue build_then_load)
  add_executable(example_${kiln_example} ${CMAKE_SOURCE_DIR}/examples/${kiln_example}.c)
  target_link_libraries(example_${kiln_example} PRIVATE kiln_shared Threads::Threads)
endforeach()
# ---- end of engine examples ------------------------------------------------------------------

# ---- plugin example ---------------------------------------------------------------------------
# examples/plugin: libswish.so, a plugin of custom operators (docs/plugins.md). It includes
# kiln_plugin.h and links nothing of kiln's; kiln_plugin_register is its only exported
# symbol. test_swish runs the example through the C API (and writes the CLI test's model and
# data); cli_plugin_swish runs it through `kiln --plugin`.
add_library(swish SHARED ${CMAKE_SOURCE_DIR}/examples/plugin/swish.c)
target_include_directories(swish PRIVATE ${CMAKE_SOURCE_DIR}/include)
set_target_properties(swish PROPERTIES C_VISIBILITY_PRESET hidden)
target_link_libraries(swish PRIVATE m)

add_executable(test_swish ${CMAKE_SOURCE_DIR}/examples/plugin/test_swish.c)
target_link_libraries(test_swish PRIVATE kiln_test_support kiln_static)
target_compile_definitions(test_swish PRIVATE SWISH_PLUGIN="$<TARGET_FILE:swish>")
add_dependencies(test_swish swish)
add_test(NAME test_swish COMMAND test_swish)

add_test(NAME cli_plugin_swish
         COMMAND sh ${CMAKE_SOURCE_DIR}/examples/plugin/test_cli.sh $<TARGET_FILE:kiln> ${CMAKE_SOURCE_DIR}
                 ${KILN_ONNX_TESTS} $<TARGET_FILE:swish> $<TARGET_FILE:test_swish>)
