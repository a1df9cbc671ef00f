#!/bin/sh
# Installs what building and testing kiln needs, from Debian's archive, when it is missing.
# Run as root on Debian 12 (or with sudo available). See docs/DEPENDENCIES.md.
set -eu
missing=""
command -v cc >/dev/null 2>&1 || missing="$missing gcc libc6-dev"
command -v make >/dev/null 2>&1 || missing="$missing make"
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
[ -f /usr/include/dnnl.h ] || missing="$missing libdnnl-dev"
# Image codecs for the ImageDecoder op (optional at build time; the tests expect them).
[ -f /usr/include/jpeglib.h ] || missing="$missing libjpeg62-turbo-dev"
[ -f /usr/include/png.h ] || missing="$missing libpng-dev"
[ -f /usr/include/x86_64-linux-gnu/tiffio.h ] || [ -f /usr/include/tiffio.h ] || missing="$missing libtiff-dev"
[ -f /usr/include/webp/decode.h ] || missing="$missing libwebp-dev"
[ -f /usr/include/openjpeg-2.5/openjpeg.h ] || missing="$missing libopenjp2-7-dev"
# Graphviz for `kiln graph` SVG/HTML (optional at build time; the tests expect it).
[ -f /usr/include/graphviz/gvc.h ] || missing="$missing libgraphviz-dev"
# libmicrohttpd and jansson for `kiln serve` (optional at build time; the tests expect it).
[ -f /usr/include/microhttpd.h ] || missing="$missing libmicrohttpd-dev"
[ -f /usr/include/jansson.h ] || missing="$missing libjansson-dev"
# libnghttp2 and protobuf-c (with protoc-c) for kiln serve's gRPC endpoint (optional at build
# time; the tests expect it).
[ -f /usr/include/nghttp2/nghttp2.h ] || missing="$missing libnghttp2-dev"
[ -f /usr/include/protobuf-c/protobuf-c.h ] || missing="$missing libprotobuf-c-dev"
command -v protoc-c >/dev/null 2>&1 || missing="$missing protobuf-c-compiler"
# curl for kiln serve's tests (tests/cli/test_serve_curl.sh, test_serve_repo.sh) and
# bench/check_serve.sh: HTTP requests as a shell user sends them.
command -v curl >/dev/null 2>&1 || missing="$missing curl"
# What only the tests need (scripts/test.sh sets KILN_NEED_CLANG=1): clang for the second
# build; python3-dev, python3-numpy and python3-pytest for the Python module and its tests;
# Debian's onnx package, since tests/cli/test_save_onnx_checker.sh runs onnx.checker on
# models kiln writes (tests/python reads ONNX test data with it); Chromium for
# tests/cli/test_graph.sh's browser checks (~81 MB, ~1 min on CI). The tests fail without
# them; they never skip.
if [ "${KILN_NEED_CLANG:-0}" = 1 ]; then
    command -v clang >/dev/null 2>&1 || missing="$missing clang"
    /usr/bin/python3 -c "import onnx" >/dev/null 2>&1 || missing="$missing python3-onnx"
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    # The Python module (cmake/python.cmake builds it when these are present) and its tests
    # (tests/python, run with python3 -m pytest): Debian's packages, no package index.
    [ -f "/usr/include/python3.$(/usr/bin/python3 -c 'import sys; print(sys.version_info[1])' 2>/dev/null)/Python.h" ] ||
        missing="$missing python3-dev"
    /usr/bin/python3 -c "import numpy" >/dev/null 2>&1 || missing="$missing python3-numpy"
    /usr/bin/python3 -c "import pytest" >/dev/null 2>&1 || missing="$missing python3-pytest"
fi
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "kiln: installing$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
