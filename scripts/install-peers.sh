#!/bin/sh
# Installs what the benchmarks (bench/, docs/benchmarks.md) need and CI does not:
#   - ONNX Runtime's CPU library and its Node.js binding: npm package onnxruntime-node,
#     pinned, into $KILN_PEERS_DIR (default build/peers, git-ignored) with `npm install --prefix`;
#   - PyTorch, torchvision and scikit-learn from Debian's archive (bench/make_models.py), and
#     python3-onnx (bench/make_fp16.py).
# Idempotent: does nothing for what is already there. Not called by scripts/test.sh.
# Run as root on Debian 12 (or with sudo available); needs node and npm. See docs/DEPENDENCIES.md.
set -eu
ORT_VERSION=1.30.0
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${KILN_PEERS_DIR:-$root/build/peers}

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=""
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
for p in python3-torch python3-torchvision python3-sklearn python3-onnx; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "kiln: installing$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086 # $missing is a list of package names
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

pkg="$peers/node_modules/onnxruntime-node/package.json"
have=""
[ -f "$pkg" ] && have=$(node -p "require('$pkg').version" 2>/dev/null || true)
if [ "$have" != "$ORT_VERSION" ]; then
    echo "kiln: installing onnxruntime-node@$ORT_VERSION into $peers"
    mkdir -p "$peers"
    # The CPU library is in the package; its postinstall script would only fetch the CUDA
    # execution provider from NuGet (not reachable here, not needed): skip that step.
    ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix "$peers" --ignore-scripts \
        --save-exact --no-audit --no-fund "onnxruntime-node@$ORT_VERSION" >/dev/null
fi
# Loading the binding proves that the native library (libonnxruntime.so.1) is there and loads.
node -e "
const ort = require('$peers/node_modules/onnxruntime-node');
console.log('onnxruntime-node ' + ort.env.versions.node + ' in $peers: loads');"
