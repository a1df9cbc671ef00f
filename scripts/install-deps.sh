#!/bin/sh
# Installs what building and testing kiln needs, from Debian's archive, when it is missing.
# Run as root on Debian 12 (or with sudo available). See docs/DEPENDENCIES.md.
set -eu
missing=""
command -v cc >/dev/null 2>&1 || missing="$missing gcc libc6-dev"
command -v make >/dev/null 2>&1 || missing="$missing make"
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
[ -f /usr/include/dnnl.h ] || missing="$missing libdnnl-dev"
[ "${KILN_NEED_CLANG:-0}" = 1 ] && ! command -v clang >/dev/null 2>&1 && missing="$missing clang"
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "kiln: installing$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
