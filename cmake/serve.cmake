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
  # The gRPC endpoint (tools/serve/grpc.c): libnghttp2 (HTTP/2) and protobuf-c, whose
  # compiler protoc-c generates the message code from kserve_grpc.proto at build time.
  pkg_check_modules(KILN_GRPC_DEPS QUIET IMPORTED_TARGET libnghttp2 libprotobuf-c)
  find_program(KILN_PROTOC_C protoc-c)
  if(KILN_GRPC_DEPS_FOUND AND KILN_PROTOC_C)
    message(STATUS "kiln: kiln serve speaks gRPC too (libnghttp2, protobuf-c)")
    set(KILN_GRPC_GEN ${CMAKE_BINARY_DIR}/serve_gen)
    file(MAKE_DIRECTORY ${KILN_GRPC_GEN})
    add_custom_command(OUTPUT ${KILN_GRPC_GEN}/kserve_grpc.pb-c.c ${KILN_GRPC_GEN}/kserve_grpc.pb-c.h
                       COMMAND ${KILN_PROTOC_C} --c_out=${KILN_GRPC_GEN} -I${KILN_SERVE_DIR}
                               ${KILN_SERVE_DIR}/kserve_grpc.proto
                       DEPENDS ${KILN_SERVE_DIR}/kserve_grpc.proto
                       COMMENT "protoc-c kserve_grpc.proto")
    # Generated code: built without kiln's warning flags (it is not ours to fix).
    add_library(kiln_serve_proto STATIC ${KILN_GRPC_GEN}/kserve_grpc.pb-c.c)
    target_include_directories(kiln_serve_proto PUBLIC ${KILN_GRPC_GEN})
    target_link_libraries(kiln_serve_proto PUBLIC PkgConfig::KILN_GRPC_DEPS)
    set_target_properties(kiln_serve_proto PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_compile_options(kiln_serve_proto PRIVATE -w)
    target_sources(kiln PRIVATE ${KILN_SERVE_DIR}/grpc.c)
    target_link_libraries(kiln PRIVATE kiln_serve_proto)
    target_compile_definitions(kiln PRIVATE KILN_HAVE_GRPC=1)
    set(KILN_HAVE_GRPC ON)
  else()
    message(STATUS "kiln: libnghttp2-dev, libprotobuf-c-dev or protobuf-c-compiler not found; kiln serve is "
                   "built without gRPC")
  endif()
else()
  message(STATUS "kiln: libmicrohttpd-dev or libjansson-dev not found; kiln serve is not built")
endif()
