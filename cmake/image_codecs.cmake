# cmake/image_codecs.cmake: optional image codecs for the ImageDecoder kernel
# (src/cpu/ops/image.c). See docs/DEPENDENCIES.md, section "Image codecs".
#
# Include it from the top CMakeLists.txt after kiln_objs, kiln_static and kiln_shared exist:
#     include(cmake/image_codecs.cmake)
# Each codec found adds KILN_HAVE_<CODEC>=1 to kiln_objs and links the library into
# kiln_static (PUBLIC, so static users get it) and kiln_shared (PRIVATE). A codec that is
# missing is skipped with a status line; ImageDecoder then refuses that format with
# KILN_E_UNSUPPORTED. BMP and PNM are parsed by kiln itself and need nothing.
#
# KILN_WITH_IMAGE_CODECS=OFF builds without any of them.

option(KILN_WITH_IMAGE_CODECS "Use the system's JPEG/PNG/TIFF/WebP/OpenJPEG libraries for ImageDecoder" ON)

set(KILN_IMAGE_CODECS_FOUND "")

# kiln_image_codec_(NAME INCLUDE_DIRS LIBRARIES): wires one found codec into the targets.
function(kiln_image_codec_ name incs libs)
  target_compile_definitions(kiln_objs PRIVATE KILN_HAVE_${name}=1)
  if(incs)
    target_include_directories(kiln_objs PRIVATE ${incs})
  endif()
  target_link_libraries(kiln_static PUBLIC ${libs})
  target_link_libraries(kiln_shared PRIVATE ${libs})
  set(KILN_IMAGE_CODECS_FOUND "${KILN_IMAGE_CODECS_FOUND} ${name}" PARENT_SCOPE)
endfunction()

if(KILN_WITH_IMAGE_CODECS)
  find_package(PkgConfig QUIET)

  # JPEG (libjpeg-turbo, Debian libjpeg62-turbo-dev) and PNG, TIFF: CMake's own modules.
  find_package(JPEG QUIET)
  if(JPEG_FOUND)
    kiln_image_codec_(JPEG "${JPEG_INCLUDE_DIRS}" "${JPEG_LIBRARIES}")
  endif()

  find_package(PNG QUIET) # also finds zlib, which PNG_LIBRARIES includes
  if(PNG_FOUND)
    kiln_image_codec_(PNG "${PNG_INCLUDE_DIRS}" "${PNG_LIBRARIES}")
  endif()

  # TIFF needs libtiff >= 4.5 (TIFFClientOpenExt: per-handle error handlers and memory caps).
  find_package(TIFF QUIET)
  if(TIFF_FOUND AND TIFF_VERSION_STRING VERSION_GREATER_EQUAL 4.5)
    kiln_image_codec_(TIFF "${TIFF_INCLUDE_DIRS}" "${TIFF_LIBRARIES}")
  elseif(TIFF_FOUND)
    message(STATUS "kiln: libtiff ${TIFF_VERSION_STRING} is older than 4.5; TIFF decoding disabled")
  endif()

  # WebP and OpenJPEG have no CMake find module: pkg-config first, then a plain search.
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(KILN_PC_WEBP QUIET libwebp)
    pkg_check_modules(KILN_PC_OPJ QUIET libopenjp2)
  endif()
  find_path(KILN_WEBP_INCLUDE_DIR webp/decode.h HINTS ${KILN_PC_WEBP_INCLUDE_DIRS})
  find_library(KILN_WEBP_LIBRARY webp HINTS ${KILN_PC_WEBP_LIBRARY_DIRS})
  if(KILN_WEBP_INCLUDE_DIR AND KILN_WEBP_LIBRARY)
    kiln_image_codec_(WEBP "${KILN_WEBP_INCLUDE_DIR}" "${KILN_WEBP_LIBRARY}")
  endif()

  find_path(KILN_OPJ_INCLUDE_DIR openjpeg.h
            HINTS ${KILN_PC_OPJ_INCLUDE_DIRS}
            PATH_SUFFIXES openjpeg-2.5 openjpeg-2.4 openjpeg-2.3)
  find_library(KILN_OPJ_LIBRARY openjp2 HINTS ${KILN_PC_OPJ_LIBRARY_DIRS})
  if(KILN_OPJ_INCLUDE_DIR AND KILN_OPJ_LIBRARY)
    kiln_image_codec_(OPENJPEG "${KILN_OPJ_INCLUDE_DIR}" "${KILN_OPJ_LIBRARY}")
  endif()
endif()

if(KILN_IMAGE_CODECS_FOUND)
  message(STATUS "kiln: image codecs:${KILN_IMAGE_CODECS_FOUND} (+ built-in BMP, PNM)")
else()
  message(STATUS "kiln: no image codec libraries; ImageDecoder reads BMP and PNM only")
endif()
