# The plugins of test_plugin.c (tests/unit/test_plugin.c): tests/plugin/kp_test.c built once
# per variant, as libkp_<variant>.so, each with its path compiled into the test.
set(KILN_TEST_PLUGINS ok second oom partial ignored twice dup_builtin dup_plugin bad_schema abi decline nosym)
foreach(v ${KILN_TEST_PLUGINS})
  string(TOUPPER ${v} V)
  add_library(kp_${v} SHARED ${CMAKE_SOURCE_DIR}/tests/plugin/kp_test.c)
  target_include_directories(kp_${v} PRIVATE ${CMAKE_SOURCE_DIR}/include)
  target_compile_definitions(kp_${v} PRIVATE KP_${V}=1)
  set_target_properties(kp_${v} PROPERTIES C_VISIBILITY_PRESET hidden)
  target_compile_definitions(test_plugin PRIVATE KP_LIB_${V}="$<TARGET_FILE:kp_${v}>")
  add_dependencies(test_plugin kp_${v})
endforeach()
