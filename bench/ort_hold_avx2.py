#!/usr/bin/env python3
"""bench/ort_hold_avx2.py: a copy of onnxruntime-node whose CPU-feature probes see no AVX-512.

    python3 bench/ort_hold_avx2.py [--from PEERS] [--to PEERS_AVX2]

kiln's `KILN_CPU_ISA=avx2` holds kiln to its AVX2 kernels on a machine with AVX-512, so that
the AVX2 path can be measured where no AVX2-only machine is at hand. ONNX Runtime has no such
switch: MLAS (its kernel library) and its CPUIDInfo pick AVX-512 kernels when CPUID reports
AVX512F and XGETBV reports the AVX-512 register state (XCR0 bits 5-7) enabled by the OS. This
script copies the onnxruntime-node package of PEERS (default build/peers, made by
scripts/install-peers.sh) to PEERS_AVX2 (default build/peers-avx2) and patches every XGETBV
instruction of the copied x86-64 libonnxruntime.so so that it reports XCR0's low byte as 0x07
(x87, SSE and AVX state enabled; AVX-512's opmask and ZMM state not): `mov al, 7; nop`,
three bytes for XGETBV's three. Every AVX-512 check then fails exactly as on an AVX2-only
CPU, and ONNX Runtime runs its AVX2/FMA3 kernels. The rest of EAX keeps what it held (the
bits above 7 name AMX, APX and similar state, whose CPUID bits are absent on the CPUs this is
meant for); EDX (XCR0's upper half, no feature checked) keeps its value.

The instructions are found by disassembly (objdump -d), their file offsets from the ELF
program headers, and each is checked to be 0F 01 D0 before it is written. The other packages
of PEERS are linked, not copied. bench/compare.sh --isa avx2 runs ONNX Runtime from
PEERS_AVX2 (see docs/benchmarks.md). Exits 1 when no XGETBV is found (a layout this script
does not know) or the library is missing.
"""
import argparse
import os
import re
import shutil
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XGETBV = b"\x0f\x01\xd0"
PATCH = b"\xb0\x07\x90"  # mov al, 7; nop
LIB = os.path.join("onnxruntime-node", "bin", "napi-v6", "linux", "x64", "libonnxruntime.so.1")


def load_segments(path):
    """(vaddr, offset, filesz) of each PT_LOAD segment of a 64-bit little-endian ELF file."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        segs = []
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack("<IIQQQQ", f.read(40))
            if p_type == 1:
                segs.append((p_vaddr, p_offset, p_filesz))
        return segs


def xgetbv_offsets(path):
    """File offsets of the XGETBV instructions objdump finds in PATH."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], check=True,
                         capture_output=True, text=True).stdout
    addrs = [int(m.group(1), 16) for m in re.finditer(r"^\s*([0-9a-f]+):\s+xgetbv\b", out, re.M)]
    segs = load_segments(path)
    offsets = []
    for a in addrs:
        seg = [s for s in segs if s[0] <= a < s[0] + s[2]]
        if not seg:
            raise ValueError(f"{path}: xgetbv at 0x{a:x} lies in no loaded segment")
        vaddr, off, _ = seg[0]
        offsets.append(a - vaddr + off)
    return offsets


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--from", dest="src", default=os.path.join(ROOT, "build", "peers"))
    ap.add_argument("--to", dest="dst", default=os.path.join(ROOT, "build", "peers-avx2"))
    args = ap.parse_args()
    src_mods = os.path.join(args.src, "node_modules")
    src_lib = os.path.join(src_mods, LIB)
    if not os.path.isfile(src_lib):
        sys.exit(f"ort_hold_avx2: {src_lib} is missing; run 'sh scripts/install-peers.sh'")
    dst_mods = os.path.join(args.dst, "node_modules")
    if os.path.exists(args.dst):
        shutil.rmtree(args.dst)
    os.makedirs(dst_mods)
    for name in os.listdir(src_mods):
        if name == "onnxruntime-node":
            shutil.copytree(os.path.join(src_mods, name), os.path.join(dst_mods, name), symlinks=True)
        else:
            os.symlink(os.path.join(os.path.abspath(src_mods), name), os.path.join(dst_mods, name))
    lib = os.path.join(dst_mods, LIB)
    offsets = xgetbv_offsets(lib)
    if not offsets:
        shutil.rmtree(args.dst)
        sys.exit(f"ort_hold_avx2: no xgetbv found in {src_lib}; this layout is not known")
    with open(lib, "r+b") as f:
        for off in offsets:
            f.seek(off)
            if f.read(3) != XGETBV:
                shutil.rmtree(args.dst)
                sys.exit(f"ort_hold_avx2: the bytes at file offset 0x{off:x} are not xgetbv")
            f.seek(off)
            f.write(PATCH)
    print(f"ort_hold_avx2: {len(offsets)} xgetbv patched in {lib}")


if __name__ == "__main__":
    main()
