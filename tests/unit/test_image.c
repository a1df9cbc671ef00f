/* test_image.c: ImageDecoder (src/cpu/ops/image.c).
 *
 * BMP and PNM images are written here, by small encoders that follow the format
 * documents, from random pixels, in every layout the decoder claims (palettes of 1/4/8
 * bits, 16-bit masks, 24/32-bit, top-down and bottom-up, the 12-byte core header; P1..P6,
 * maxval 255, 1000 and 65535), and must decode to exactly those pixels. The library-backed
 * formats are checked against the ONNX node test data (exact match), then attacked:
 * truncated, bit-flipped, and with header sizes patched to 60000 x 60000 (which must give
 * KILN_E_LIMIT without allocating), and every allocation is failed in turn. A format
 * whose codec this build lacks must fail with KILN_E_UNSUPPORTED; those checks then say
 * "skipped" (they never pass silently).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernel.h"
#include "test_support.h"

static uint32_t rnd_u(void) { return (uint32_t)(rng_u64() >> 16); }

/* ------------------------------------------------------------------ harness */

/* Runs ImageDecoder-20 on bytes[0..n) with pixel_format pf (NULL: absent). On KILN_OK *out
 * is a new value owned by the caller. */
static kiln_status decode_as(kiln_dtype dt, int rank, const uint8_t *bytes, size_t n, const char *pf,
                             struct kiln_value **out, kiln_err *err)
{
    int64_t dims[2] = {(int64_t)n, 1};
    struct kiln_value *x;
    *out = NULL;
    if (kiln_value_new_tensor(dt, rank, dims, &x, err)) return err->status;
    if (n) memcpy(x->t.data, bytes, n);
    struct kiln_attr at[1];
    size_t na = 0;
    if (pf) at[na++] = attr_s("pixel_format", pf);
    kiln_status st = run_op("ImageDecoder", 20, at, na, &x, 1, out, err);
    kiln_value_free(x);
    return st;
}

static kiln_status decode(const uint8_t *bytes, size_t n, const char *pf, struct kiln_value **out, kiln_err *err)
{
    return decode_as(KILN_DTYPE_U8, 1, bytes, n, pf, out, err);
}

/* Checks that y is uint8 [h, w, c] holding want[0..h*w*c). */
static void expect_pixels(const struct kiln_value *y, int64_t h, int64_t w, int64_t c, const uint8_t *want,
                          const char *what)
{
    if (!y || y->t.dtype != KILN_DTYPE_U8 || y->t.rank != 3 || y->t.dims[0] != h || y->t.dims[1] != w ||
        y->t.dims[2] != c) {
        CHECK(false, "%s: want uint8 [%lld, %lld, %lld]", what, (long long)h, (long long)w, (long long)c);
        return;
    }
    const uint8_t *g = y->t.data;
    for (size_t i = 0; i < (size_t)(h * w * c); i++)
        if (g[i] != want[i]) {
            CHECK(false, "%s: byte %zu (pixel %zu, channel %zu) is %u, want %u", what, i, i / (size_t)c,
                  i % (size_t)c, g[i], want[i]);
            return;
        }
}

/* Decodes and compares with pixel_format RGB; then BGR and Grayscale against conversions of
 * the RGB expectation (Pillow's L = (19595 R + 38470 G + 7471 B) / 65536, rounded). */
static void expect_decodes(const uint8_t *bytes, size_t n, int64_t h, int64_t w, const uint8_t *rgb, const char *what)
{
    size_t np = (size_t)(h * w);
    uint8_t *bgr = malloc(np * 3), *gray = malloc(np);
    for (size_t i = 0; i < np; i++) {
        bgr[3 * i] = rgb[3 * i + 2], bgr[3 * i + 1] = rgb[3 * i + 1], bgr[3 * i + 2] = rgb[3 * i];
        double l = (19595.0 * rgb[3 * i] + 38470.0 * rgb[3 * i + 1] + 7471.0 * rgb[3 * i + 2]) / 65536.0;
        gray[i] = (uint8_t)(l + 0.5);
    }
    const char *pfs[4] = {NULL, "RGB", "BGR", "Grayscale"};
    const uint8_t *wants[4] = {rgb, rgb, bgr, gray};
    for (int m = 0; m < 4; m++) {
        kiln_err e = {0};
        struct kiln_value *y;
        char label[160];
        snprintf(label, sizeof label, "%s as %s", what, pfs[m] ? pfs[m] : "default");
        kiln_status st = decode(bytes, n, pfs[m], &y, &e);
        CHECK(st == KILN_OK, "%s: %s", label, e.msg);
        if (!st) expect_pixels(y, h, w, m == 3 ? 1 : 3, wants[m], label);
        kiln_value_free(y);
    }
    free(bgr);
    free(gray);
}

/* ------------------------------------------------------------------ BMP writer */

struct bmp_spec {
    int w, h, bpp, hsize; /* hsize 12 (core) or 40 (info) */
    uint32_t comp;        /* 0 BI_RGB, 3 BI_BITFIELDS */
    bool top_down;
    int npal;
    uint8_t pal[256][3]; /* RGB */
    uint32_t masks[3];
};

static void put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v), put16(p + 2, v >> 16);
}

/* A BMP file of s holding vals[y * w + x] (top row first): palette indices for bpp <= 8,
 * 0xRRGGBB for 24, the raw little-endian word for 16 and 32. Caller frees. */
static uint8_t *bmp_make(const struct bmp_spec *s, const uint32_t *vals, size_t *len)
{
    size_t stride = (((size_t)s->w * (size_t)s->bpp + 31) / 32) * 4;
    size_t masks = s->comp == 3 ? 12 : 0, pe = s->hsize == 12 ? 3 : 4;
    size_t off = 14 + (size_t)s->hsize + masks + (size_t)s->npal * pe;
    *len = off + stride * (size_t)s->h;
    uint8_t *b = calloc(1, *len);
    b[0] = 'B', b[1] = 'M';
    put32(b + 2, (uint32_t)*len);
    put32(b + 10, (uint32_t)off);
    put32(b + 14, (uint32_t)s->hsize);
    if (s->hsize == 12) {
        put16(b + 18, (uint32_t)s->w), put16(b + 20, (uint32_t)s->h), put16(b + 22, 1), put16(b + 24, (uint32_t)s->bpp);
    } else {
        put32(b + 18, (uint32_t)s->w), put32(b + 22, (uint32_t)(s->top_down ? -s->h : s->h));
        put16(b + 26, 1), put16(b + 28, (uint32_t)s->bpp), put32(b + 30, s->comp);
        put32(b + 34, (uint32_t)(stride * (size_t)s->h)), put32(b + 38, 2835), put32(b + 42, 2835);
        put32(b + 46, (uint32_t)s->npal);
        for (int i = 0; i < 3 && masks; i++) put32(b + 54 + 4 * i, s->masks[i]);
    }
    for (int i = 0; i < s->npal; i++) {
        uint8_t *e = b + 14 + s->hsize + masks + (size_t)i * pe;
        e[0] = s->pal[i][2], e[1] = s->pal[i][1], e[2] = s->pal[i][0];
    }
    for (int y = 0; y < s->h; y++) {
        uint8_t *row = b + off + stride * (size_t)(s->top_down ? y : s->h - 1 - y);
        for (int x = 0; x < s->w; x++) {
            uint32_t v = vals[y * s->w + x];
            switch (s->bpp) {
            case 1: case 4: case 8: {
                size_t bit = (size_t)x * (size_t)s->bpp;
                row[bit / 8] |= (uint8_t)(v << (8 - s->bpp - bit % 8));
                break;
            }
            case 16: put16(row + 2 * x, v); break;
            case 24: row[3 * x] = (uint8_t)v, row[3 * x + 1] = (uint8_t)(v >> 8), row[3 * x + 2] = (uint8_t)(v >> 16); break;
            default: put32(row + 4 * x, v);
            }
        }
    }
    return b;
}

/* Expected 0..255 value of a `bits`-wide channel value: v * 255 / (2^bits - 1), rounded. */
static uint8_t scale_bits(uint32_t v, int bits)
{
    return (uint8_t)((double)v * 255.0 / (double)((1u << bits) - 1) + 0.5);
}

static void test_bmp(void)
{
    struct {
        int w, h, bpp, hsize;
        uint32_t comp;
        bool top_down;
    } cases[] = {
        {7, 5, 24, 40, 0, false}, {13, 4, 24, 40, 0, true}, {6, 3, 24, 12, 0, false},
        {9, 7, 32, 40, 0, true},  {5, 6, 8, 40, 0, false},  {11, 3, 4, 40, 0, false},
        {17, 4, 1, 40, 0, true},  {10, 5, 8, 12, 0, false}, {7, 7, 16, 40, 3, false},
        {6, 4, 16, 40, 0, false}, {5, 5, 32, 40, 3, true},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        struct bmp_spec s;
        memset(&s, 0, sizeof s);
        s.w = cases[c].w, s.h = cases[c].h, s.bpp = cases[c].bpp, s.hsize = cases[c].hsize;
        s.comp = cases[c].comp, s.top_down = cases[c].top_down;
        if (s.bpp <= 8) {
            s.npal = 1 << s.bpp;
            if (s.bpp == 8) s.npal = 200; /* fewer entries than 2^bpp, as biClrUsed allows */
            for (int i = 0; i < s.npal; i++)
                for (int j = 0; j < 3; j++) s.pal[i][j] = (uint8_t)rnd_u();
        }
        int mbits[3] = {8, 8, 8}, mshift[3] = {16, 8, 0};
        if (s.bpp == 16 && s.comp == 3) { /* RGB 565 */
            s.masks[0] = 0xF800, s.masks[1] = 0x07E0, s.masks[2] = 0x001F;
            mbits[0] = 5, mbits[1] = 6, mbits[2] = 5, mshift[0] = 11, mshift[1] = 5, mshift[2] = 0;
        } else if (s.bpp == 16) { /* BI_RGB 16 is X1R5G5B5 */
            mbits[0] = mbits[1] = mbits[2] = 5, mshift[0] = 10, mshift[1] = 5, mshift[2] = 0;
        } else if (s.bpp == 32 && s.comp == 3) { /* masks in an unusual order: xBGR */
            s.masks[0] = 0xFF, s.masks[1] = 0xFF00, s.masks[2] = 0xFF0000;
            mshift[0] = 0, mshift[1] = 8, mshift[2] = 16;
        }
        size_t np = (size_t)(s.w * s.h), len;
        uint32_t *vals = malloc(np * sizeof *vals);
        uint8_t *rgb = malloc(np * 3);
        for (size_t i = 0; i < np; i++) {
            uint32_t v = rnd_u();
            if (s.bpp <= 8) {
                v %= (uint32_t)s.npal;
                memcpy(rgb + 3 * i, s.pal[v], 3);
            } else {
                if (s.bpp == 16) v &= 0xFFFF;
                if (s.bpp == 24) v &= 0xFFFFFF;
                for (int j = 0; j < 3; j++)
                    rgb[3 * i + j] = scale_bits((v >> mshift[j]) & ((1u << mbits[j]) - 1), mbits[j]);
            }
            vals[i] = v;
        }
        uint8_t *b = bmp_make(&s, vals, &len);
        char what[80];
        snprintf(what, sizeof what, "BMP %dx%d %d-bit header %d comp %u%s", s.w, s.h, s.bpp, s.hsize, s.comp,
                 s.top_down ? " top-down" : "");
        expect_decodes(b, len, s.h, s.w, rgb, what);
        /* Every truncation of the pixel data fails. */
        for (size_t cut = len - 1; cut + 16 > len && cut > 60; cut--) {
            kiln_err e = {0};
            struct kiln_value *y;
            kiln_status st = decode(b, cut, NULL, &y, &e);
            CHECK(st == KILN_E_INVALID_ARG && strstr(e.msg, "truncated"), "%s cut to %zu: status %d '%s'", what, cut,
                  (int)st, e.msg);
            kiln_value_free(y);
        }
        free(b);
        free(vals);
        free(rgb);
    }
    /* Declared 100000 x 100000 with no pixel data: the cap, not an allocation, answers. */
    struct bmp_spec s;
    memset(&s, 0, sizeof s);
    s.w = 1, s.h = 1, s.bpp = 24, s.hsize = 40;
    uint32_t v = 0;
    size_t len;
    uint8_t *b = bmp_make(&s, &v, &len);
    put32(b + 18, 100000), put32(b + 22, 100000);
    kiln_err e = {0};
    struct kiln_value *y;
    CHECK(decode(b, len, NULL, &y, &e) == KILN_E_LIMIT && strstr(e.msg, "2^28"), "BMP 100000^2: '%s'", e.msg);
    /* RLE is refused as unsupported, an odd bit depth as invalid. */
    put32(b + 18, 1), put32(b + 22, 1), put32(b + 30, 1);
    CHECK(decode(b, len, NULL, &y, &e) == KILN_E_UNSUPPORTED && strstr(e.msg, "compression 1"), "BMP RLE8: '%s'", e.msg);
    put32(b + 30, 0), put16(b + 28, 7);
    CHECK(decode(b, len, NULL, &y, &e) == KILN_E_INVALID_ARG && strstr(e.msg, "7 bits"), "BMP 7-bit: '%s'", e.msg);
    free(b);
}

/* ------------------------------------------------------------------ PNM writer */

static void test_pnm(void)
{
    for (int kind = 1; kind <= 6; kind++) {
        for (int variant = 0; variant < 2; variant++) {
            int w = 3 + (int)(rnd_u() % 14), h = 1 + (int)(rnd_u() % 6);
            int ch = kind == 3 || kind == 6 ? 3 : 1;
            bool bitmap = kind == 1 || kind == 4, ascii = kind <= 3;
            int maxval = bitmap ? 1 : variant == 0 ? 255 : ascii ? 1000 : 65535;
            size_t ns = (size_t)(w * h * ch), cap = 64 + ns * 8, len = 0;
            uint8_t *b = malloc(cap), *rgb = malloc((size_t)(w * h * 3));
            uint32_t *smp = malloc(ns * sizeof *smp);
            len += (size_t)snprintf((char *)b, cap, "P%d\n# made by test_image.c\n%d %d\n", kind, w, h);
            if (!bitmap) len += (size_t)snprintf((char *)b + len, cap - len, "%d\n", maxval);
            for (size_t i = 0; i < ns; i++) smp[i] = rnd_u() % (uint32_t)(maxval + 1);
            if (kind == 4) {
                size_t rowb = ((size_t)w + 7) / 8;
                memset(b + len, 0, rowb * (size_t)h);
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++)
                        b[len + (size_t)y * rowb + (size_t)x / 8] |= (uint8_t)(smp[y * w + x] << (7 - x % 8));
                len += rowb * (size_t)h;
            } else if (ascii) {
                for (size_t i = 0; i < ns; i++) /* P1 samples run together in variant 1 */
                    len += (size_t)snprintf((char *)b + len, cap - len, "%u%s", smp[i],
                                            kind == 1 && variant ? "" : i % 7 == 6 ? "\n" : " ");
            } else {
                for (size_t i = 0; i < ns; i++) {
                    if (maxval > 255) b[len++] = (uint8_t)(smp[i] >> 8);
                    b[len++] = (uint8_t)smp[i];
                }
            }
            for (size_t p = 0; p < (size_t)(w * h); p++)
                for (int j = 0; j < 3; j++) {
                    uint32_t v = smp[p * (size_t)ch + (size_t)(ch == 3 ? j : 0)];
                    rgb[3 * p + (size_t)j] = bitmap ? (v ? 0 : 255) : (uint8_t)((double)v * 255.0 / maxval + 0.5);
                }
            char what[64];
            snprintf(what, sizeof what, "PNM P%d %dx%d maxval %d", kind, w, h, maxval);
            expect_decodes(b, len, h, w, rgb, what);
            if (ch == 1) { /* a gray source read as Grayscale is itself */
                kiln_err e = {0};
                struct kiln_value *y;
                uint8_t *g = malloc((size_t)(w * h));
                for (size_t p = 0; p < (size_t)(w * h); p++) g[p] = rgb[3 * p];
                CHECK(decode(b, len, "Grayscale", &y, &e) == KILN_OK, "%s: %s", what, e.msg);
                expect_pixels(y, h, w, 1, g, what);
                kiln_value_free(y);
                free(g);
            }
            if (!ascii) {
                kiln_err e = {0};
                struct kiln_value *y;
                CHECK(decode(b, len - 1, NULL, &y, &e) == KILN_E_INVALID_ARG && strstr(e.msg, "truncated"),
                      "%s cut by one byte: '%s'", what, e.msg);
            }
            free(b);
            free(rgb);
            free(smp);
        }
    }
    const char *bad[] = {"P6\n100000 100000\n255\n", "P3\n2 2\n255\n1 2 3 4 5 6 7 8 9 10 11", "P5\n0 4\n255\n",
                         "P2\n1 1\n70000\n5", "P6\n4 4\n"};
    kiln_status want[] = {KILN_E_LIMIT, KILN_E_INVALID_ARG, KILN_E_INVALID_ARG, KILN_E_INVALID_ARG, KILN_E_INVALID_ARG};
    const char *needle[] = {"2^28", "ends before", "width 0", "maxval 70000", "maxval -1"};
    for (int i = 0; i < 5; i++) {
        kiln_err e = {0};
        struct kiln_value *y;
        kiln_status st = decode((const uint8_t *)bad[i], strlen(bad[i]), NULL, &y, &e);
        CHECK(st == want[i] && strstr(e.msg, needle[i]), "PNM '%.12s...': status %d '%s'", bad[i], (int)st, e.msg);
    }
}

/* ------------------------------------------------------------------ ONNX data, hostile copies */

static uint32_t crc32_png(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void put_be16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v;
}
static void put_be32(uint8_t *p, uint32_t v)
{
    put_be16(p, v >> 16), put_be16(p + 2, v);
}

/* Patches the declared size of a copy of an encoded image to 60000 x 60000 (60000 x 60000
 * = 3.6e9 pixels, far above the cap). Returns false for formats where we don't. */
static bool patch_huge(const char *fmt, uint8_t *b, size_t n)
{
    if (!strcmp(fmt, "png")) { /* IHDR is the first chunk: length, type, w, h, ..., CRC */
        put_be32(b + 16, 60000), put_be32(b + 20, 60000);
        put_be32(b + 29, crc32_png(b + 12, 17));
        return true;
    }
    if (!strncmp(fmt, "jpeg", 4) && strcmp(fmt, "jpeg2k")) { /* SOF0/SOF2: FF C0 len P Y X */
        for (size_t i = 2; i + 9 < n; i++)
            if (b[i] == 0xFF && (b[i + 1] == 0xC0 || b[i + 1] == 0xC2)) {
                put_be16(b + i + 5, 60000), put_be16(b + i + 7, 60000);
                return true;
            }
        return false;
    }
    if (!strcmp(fmt, "jpeg2k")) { /* JP2 'ihdr' box: H W; SIZ: FF 51 Lsiz Rsiz Xsiz Ysiz XO YO XT YT */
        for (size_t i = 0; i + 12 < n; i++)
            if (!memcmp(b + i, "ihdr", 4)) {
                put_be32(b + i + 4, 60000), put_be32(b + i + 8, 60000);
                break;
            }
        for (size_t i = 0; i + 30 < n; i++)
            if (b[i] == 0xFF && b[i + 1] == 0x51) {
                put_be32(b + i + 6, 60000), put_be32(b + i + 10, 60000);
                put_be32(b + i + 22, 60000), put_be32(b + i + 26, 60000); /* one tile */
                return true;
            }
        return false;
    }
    if (!strcmp(fmt, "tiff") && n > 8 && b[0] == 'I') { /* IFD entries: ImageWidth 256, ImageLength 257 */
        uint32_t ifd = b[4] | b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
        if (ifd + 2 > n) return false;
        int cnt = 0;
        for (uint32_t e = 0, ne = b[ifd] | b[ifd + 1] << 8; e < ne && ifd + 2 + 12 * (e + 1) <= n; e++) {
            uint8_t *en = b + ifd + 2 + 12 * e;
            int tag = en[0] | en[1] << 8, type = en[2] | en[3] << 8;
            if (tag != 256 && tag != 257) continue;
            if (type == 3) put16(en + 8, 60000);
            else put32(en + 8, 60000);
            cnt++;
        }
        return cnt == 2;
    }
    return false;
}

static void test_onnx_cases(void)
{
    const char *root = getenv("KILN_ONNX_TESTS") ? getenv("KILN_ONNX_TESTS") : KILN_ONNX_TESTS;
    static const char *const cases[] = {"bmp_rgb", "jpeg2k_rgb", "jpeg_bgr", "jpeg_grayscale", "jpeg_rgb",
                                        "png_rgb", "pnm_rgb", "tiff_rgb", "webp_rgb"};
    int decoded = 0, skipped = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char path[1024], fmt[16];
        snprintf(fmt, sizeof fmt, "%.*s", (int)(strchr(cases[c], '_') - cases[c]), cases[c]);
        const char *pf = strstr(cases[c], "bgr") ? "BGR" : strstr(cases[c], "gray") ? "Grayscale" : "RGB";
        kiln_value *in = NULL, *want = NULL;
        kiln_err e = {0};
        snprintf(path, sizeof path, "%s/node/test_image_decoder_decode_%s/test_data_set_0/input_0.pb", root, cases[c]);
        if (kiln_value_read_file(path, 0, &in, &e)) {
            CHECK(false, "cannot read %s: %s", path, e.msg);
            continue;
        }
        snprintf(path, sizeof path, "%s/node/test_image_decoder_decode_%s/test_data_set_0/output_0.pb", root, cases[c]);
        if (kiln_value_read_file(path, 0, &want, &e)) {
            CHECK(false, "cannot read %s: %s", path, e.msg);
            kiln_value_free(in);
            continue;
        }
        const uint8_t *bytes = in->t.data;
        size_t n = kiln_tensor_numel(&in->t);
        struct kiln_value *y;
        kiln_status st = decode(bytes, n, pf, &y, &e);
        if (st == KILN_E_UNSUPPORTED && strstr(e.msg, "has no")) {
            printf("test_image: %s skipped: %s\n", cases[c], e.msg);
            skipped++;
            kiln_value_free(in);
            kiln_value_free(want);
            continue;
        }
        CHECK(st == KILN_OK, "%s: %s", cases[c], e.msg);
        if (!st) expect_pixels(y, want->t.dims[0], want->t.dims[1], want->t.dims[2], want->t.data, cases[c]);
        kiln_value_free(y);
        decoded++;

        /* Truncated to at most half: every codec must fail (no decoder can make an image
         * out of half its data without noticing), and never crash. */
        uint8_t *copy = malloc(n);
        for (size_t cut = 0; cut <= n / 2; cut += 1 + n / 40) {
            st = decode(bytes, cut, pf, &y, &e);
            CHECK(st == KILN_E_INVALID_ARG || (cut < 12 && st == KILN_E_UNSUPPORTED),
                  "%s cut to %zu of %zu bytes: status %d '%s'", cases[c], cut, n, (int)st, e.msg);
            kiln_value_free(y);
        }
        /* Cut near the end, and single corrupted bytes: any status, but a success must be
         * a well-formed image (ASan/UBSan watch the rest). */
        for (size_t cut = n - 1; cut > n - 8; cut--) {
            st = decode(bytes, cut, pf, &y, &e);
            CHECK(st != KILN_OK || (y->t.rank == 3 && y->t.dims[2] == (strcmp(pf, "Grayscale") ? 3 : 1)),
                  "%s cut to %zu: bad output", cases[c], cut);
            kiln_value_free(y);
        }
        for (int t = 0; t < 150; t++) {
            memcpy(copy, bytes, n);
            size_t at = rnd_u() % n;
            copy[at] ^= (uint8_t)(1 + rnd_u() % 255);
            st = decode(copy, n, pf, &y, &e);
            CHECK(st == KILN_OK || st == KILN_E_INVALID_ARG || st == KILN_E_UNSUPPORTED || st == KILN_E_LIMIT,
                  "%s with byte %zu corrupted: status %d '%s'", cases[c], at, (int)st, e.msg);
            CHECK(st != KILN_OK || (y->t.rank == 3 && y->t.dims[0] > 0 && y->t.dims[1] > 0),
                  "%s with byte %zu corrupted: bad output", cases[c], at);
            kiln_value_free(y);
        }
        /* A huge declared size is refused by the cap. */
        memcpy(copy, bytes, n);
        if (patch_huge(fmt, copy, n)) {
            st = decode(copy, n, pf, &y, &e);
            CHECK(st == KILN_E_LIMIT && strstr(e.msg, "60000"), "%s patched to 60000^2: status %d '%s'", cases[c],
                  (int)st, e.msg);
            kiln_value_free(y);
        }
        free(copy);
        /* Every allocation failing in turn gives NOMEM, until the decode succeeds. */
        for (long k = 1; k < 100; k++) {
            kiln_alloc_fail_after(k);
            st = decode(bytes, n, pf, &y, &e);
            kiln_alloc_fail_after(0);
            CHECK(st == KILN_OK || st == KILN_E_NOMEM, "%s, allocation %ld failing: status %d '%s'", cases[c], k,
                  (int)st, e.msg);
            kiln_value_free(y);
            if (st == KILN_OK) break;
        }
        kiln_value_free(in);
        kiln_value_free(want);
    }
    printf("test_image: %d ONNX images decoded, %d skipped (codec not built)\n", decoded, skipped);
}

/* ------------------------------------------------------------------ bad use */

static void test_errors(void)
{
    kiln_err e = {0};
    struct kiln_value *y;
    const uint8_t gif[] = "GIF89a\x01\x00\x01\x00";
    CHECK(decode(gif, sizeof gif - 1, NULL, &y, &e) == KILN_E_UNSUPPORTED && strstr(e.msg, "47 49 46"),
          "GIF: '%s'", e.msg);
    CHECK(decode(gif, 0, NULL, &y, &e) == KILN_E_UNSUPPORTED && strstr(e.msg, "0 bytes"), "empty: '%s'", e.msg);
    const uint8_t pnm[] = "P5 1 1 255\n\x07";
    CHECK(decode(pnm, sizeof pnm - 1, "RGBA", &y, &e) != KILN_OK && strstr(e.msg, "RGBA"), "RGBA: '%s'", e.msg);
    CHECK(decode_as(KILN_DTYPE_I8, 1, pnm, sizeof pnm - 1, NULL, &y, &e) == KILN_E_INVALID_ARG && strstr(e.msg, "int8"),
          "int8 input: '%s'", e.msg);
    CHECK(decode_as(KILN_DTYPE_U8, 2, pnm, sizeof pnm - 1, NULL, &y, &e) == KILN_E_INVALID_ARG &&
              strstr(e.msg, "rank 2"), "rank 2 input: '%s'", e.msg);
    CHECK(decode(pnm, sizeof pnm - 1, NULL, &y, &e) == KILN_OK && y && ((uint8_t *)y->t.data)[2] == 7,
          "1x1 P5: '%s'", e.msg);
    kiln_value_free(y);
}

int main(void)
{
    rng_seed(0x9E3779B97F4A7C15ull);
    test_bmp();
    test_pnm();
    test_onnx_cases();
    test_errors();
    return test_summary("test_image");
}
