#!/usr/bin/python3
"""Prints the coefficient table of the AVX-512 GELU (src/cpu/isa/vmath_v.h, gelu_q_c).

GELU(x) = 0.5 x + |x| q(|x|) with q(a) = 0.5 erf(a / sqrt 2). For a in [0, 15 w), w = 25/64,
q is a polynomial of degree 5 in u = a - k w about the nearest centre k w (k = 0..14,
|u| <= w / 2); entry 15 is the constant 0.5 that q rounds to in float32 from a = 5.63 on
(14.5 w = 5.66). Each polynomial is a least-squares fit in double to q on 400 Chebyshev
nodes of |u| <= 0.56 w (a little beyond the interval, as the kernel's k = round(a * 2.56)
may pick a neighbour at a boundary); the interval about 0 is fitted with odd powers only
(q is odd there). Needs Debian's python3-numpy and python3-scipy.

    /usr/bin/python3 scripts/fit_gelu.py
"""
import numpy as np
from scipy.special import erf

W = 25 / 64
DEG = 5
HALF = 0.56 * W
N = 400


def fit(k):
    u = np.cos(np.pi * (np.arange(N) + 0.5) / N) * HALF
    f = 0.5 * erf((k * W + u) / np.sqrt(2))
    powers = [d for d in range(DEG + 1) if k > 0 or d % 2 == 1]
    co, *_ = np.linalg.lstsq(np.stack([u ** d for d in powers], axis=1), f, rcond=None)
    out = [0.0] * (DEG + 1)
    for d, c in zip(powers, co):
        out[d] = float(np.float32(c))
    return out


def main():
    rows = [[0.0] * 16 for _ in range(DEG + 1)]
    for k in range(15):
        for d, c in enumerate(fit(k)):
            rows[d][k] = c
    rows[0][15] = 0.5
    print("static const float gelu_q_c[%d][16] __attribute__((aligned(64))) = {" % (DEG + 1))
    for r in rows:
        vals = ["%.9e" % v + "f" for v in r]
        lines = [", ".join(vals[i:i + 5]) for i in range(0, 16, 5)]
        print("    {" + ",\n     ".join(lines) + "},")
    print("};")


if __name__ == "__main__":
    main()
