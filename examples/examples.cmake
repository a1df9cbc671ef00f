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
