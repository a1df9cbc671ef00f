# kiln serve (tools/serve/, docs/serve.md): a Triton-compatible inference server inside the
# kiln binary. Its parsers (config.pbtxt, the binary tensor format, the model config) have no
# dependency and form kiln_serve_core, which the unit tests link; the server itself needs
# Debian's libmicrohttpd-dev (HTTP/1.1) and libjansson-dev (JSON), see docs/DEPENDENCIES.md.
# Without them the kiln binary is built without `serve` (it says so when asked).
set(KILN_SERVE_DIR ${CMAKE_SOURCE_DIR}/tools/serve)
add_library(kiln_serve_core STATIC ${KILN_SERVE_DIR}/pbtxt.c ${KILN_SERVE_DIR}/codec.c
            ${KILN_SERVE_DIR}/config.c ${KILN_SERVE_DIR}/classify.c ${KILN_SERVE_DIR}/batcher.c)
target_include_directories(kiln_serve_core PUBLIC ${KILN_SERVE_DIR})
target_link_libraries(kiln_serve_core PUBLIC kiln_static)

find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(KILN_SERVE_DEPS QUIET IMPORTED_TARGET libmicrohttpd jansson)
endif()
if(KILN_SERVE_DEPS_FOUND)
  message(STATUS "kiln: building kiln serve (libmicrohttpd, jansson)")
  foreach(f repo sched metrics infer model_json http serve)
    target_sources(kiln PRIVATE ${KILN_SERVE_DIR}/${f}.c)
  endforeach()
  target_link_libraries(kiln PRIVATE kiln_serve_core PkgConfig::KILN_SERVE_DEPS)
  target_compile_definitions(kiln PRIVATE KILN_HAVE_SERVE=1)
else()
  message(STATUS "kiln: libmicrohttpd-dev or libjansson-dev not found; kiln serve is not built")
endif()
