# cmake/python.cmake: the Python module `kiln` (python/; docs/python.md).
#
# Built whenever Python 3's headers (python3-dev) and NumPy (python3-numpy) are found, into
# <build dir>/python/kiln/: the C extension _kiln (python/src/*.c, a client of include/kiln.h
# linked with libkiln statically) next to copies of python/kiln/*.py and *.pyi, so that
#     PYTHONPATH=<build dir>/python python3 -c 'import kiln'
# works. The interpreter is Debian's /usr/bin/python3 unless Python3_EXECUTABLE says
# otherwise. `cmake --install <build dir> --component python` copies the package into the
# interpreter's site-packages under CMAKE_INSTALL_PREFIX. The test python_tests runs
# `python3 -m pytest tests/python` on the build (python3-pytest).
#
# KILN_WITH_PYTHON=OFF skips it.

option(KILN_WITH_PYTHON "Build the Python module when python3-dev and python3-numpy are installed" ON)

if(KILN_WITH_PYTHON)
  if(NOT DEFINED Python3_EXECUTABLE AND EXISTS /usr/bin/python3)
    set(Python3_EXECUTABLE /usr/bin/python3)
  endif()
  find_package(Python3 QUIET COMPONENTS Interpreter Development.Module NumPy)
endif()

if(KILN_WITH_PYTHON AND Python3_Development.Module_FOUND AND Python3_NumPy_FOUND)
  message(STATUS "kiln: building the Python module for ${Python3_EXECUTABLE} (NumPy ${Python3_NumPy_VERSION})")
  set(KILN_PYTHON_DIR ${CMAKE_BINARY_DIR}/python)
  file(GLOB KILN_PYTHON_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/python/src/*.c)
  Python3_add_library(kiln_python MODULE WITH_SOABI ${KILN_PYTHON_SOURCES})
  set_target_properties(kiln_python PROPERTIES OUTPUT_NAME _kiln C_VISIBILITY_PRESET hidden
                        LIBRARY_OUTPUT_DIRECTORY ${KILN_PYTHON_DIR}/kiln)
  target_include_directories(kiln_python PRIVATE ${CMAKE_SOURCE_DIR}/include)
  target_compile_definitions(kiln_python PRIVATE NPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION)
  target_link_libraries(kiln_python PRIVATE kiln_static Python3::NumPy)

  # The pure-Python files, copied next to the extension whenever they change.
  file(GLOB KILN_PYTHON_FILES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/python/kiln/*.py
       ${CMAKE_SOURCE_DIR}/python/kiln/*.pyi ${CMAKE_SOURCE_DIR}/python/kiln/py.typed)
  set(KILN_PYTHON_COPIES "")
  foreach(f ${KILN_PYTHON_FILES})
    get_filename_component(name ${f} NAME)
    add_custom_command(OUTPUT ${KILN_PYTHON_DIR}/kiln/${name}
                       COMMAND ${CMAKE_COMMAND} -E copy_if_different ${f} ${KILN_PYTHON_DIR}/kiln/${name}
                       DEPENDS ${f} VERBATIM)
    list(APPEND KILN_PYTHON_COPIES ${KILN_PYTHON_DIR}/kiln/${name})
  endforeach()
  add_custom_target(kiln_python_files ALL DEPENDS ${KILN_PYTHON_COPIES})
  add_dependencies(kiln_python kiln_python_files)

  if(NOT DEFINED KILN_PYTHON_INSTALL_DIR)
    # Debian's python3 looks in PREFIX/lib/python3.X/dist-packages (for /usr/local); others
    # in their posix_prefix scheme's site-packages.
    execute_process(COMMAND ${Python3_EXECUTABLE} -c
                    "import sys, sysconfig; p = sys.argv[1]; v = sys.version_info; print(f'{p}/lib/python{v[0]}.{v[1]}/dist-packages' if 'deb_system' in sysconfig.get_scheme_names() else sysconfig.get_path('platlib', 'posix_prefix', vars={'base': p, 'platbase': p}))"
                    ${CMAKE_INSTALL_PREFIX}
                    OUTPUT_VARIABLE KILN_PYTHON_INSTALL_DIR OUTPUT_STRIP_TRAILING_WHITESPACE)
  endif()
  install(DIRECTORY ${KILN_PYTHON_DIR}/kiln DESTINATION ${KILN_PYTHON_INSTALL_DIR} COMPONENT python
          PATTERN __pycache__ EXCLUDE)

  add_test(NAME python_tests
           COMMAND ${CMAKE_COMMAND} -E env PYTHONPATH=${KILN_PYTHON_DIR} KILN_ONNX_TESTS=${KILN_ONNX_TESTS}
                   KILN_BINARY_DIR=${CMAKE_BINARY_DIR} PYTHONDONTWRITEBYTECODE=1
                   ${Python3_EXECUTABLE} -m pytest -q -p no:cacheprovider ${CMAKE_SOURCE_DIR}/tests/python
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
else()
  message(STATUS "kiln: python3-dev or python3-numpy not found (or KILN_WITH_PYTHON=OFF); no Python module")
endif()
