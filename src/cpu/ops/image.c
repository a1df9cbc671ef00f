/* src/cpu/ops/image.c: ONNX ImageDecoder (opset 20).
 *
 * Input: the bytes of one encoded image (uint8, 1-D). Output: uint8 [H, W, C], C = 3 for
 * pixel_format "RGB" (default) and "BGR", C = 1 for "Grayscale". The format is told by the
 * leading bytes, not by any name: BMP, JPEG, JPEG 2000 (JP2 box or raw J2K codestream),
 * PNG, PNM (P1..P6), TIFF and WebP.
 *
 * Codecs. BMP and PNM are parsed here (bounded, every offset checked). JPEG, PNG, TIFF,
 * WebP and JPEG 2000 use the system's libjpeg(-turbo), libpng, libtiff (>= 4.5), libwebp
 * and OpenJPEG, each optional at build time (KILN_HAVE_JPEG, _PNG, _TIFF, _WEBP,
 * _OPENJPEG; see cmake/image_codecs.cmake); a format whose codec is missing fails with
 * KILN_E_UNSUPPORTED naming it.
 *
 * Matching the reference: the expected outputs of the ONNX tests come from the reference
 * implementation, which decodes with Pillow (itself on libjpeg, libpng, libtiff, libwebp,
 * OpenJPEG). So JPEG is decoded with libjpeg's defaults (JDCT_ISLOW, fancy upsampling) to
 * RGB, and every colour -> gray conversion is Pillow's "L" conversion
 * Y = (19595 R + 38470 G + 7471 B + 32768) >> 16 (BT.601 weights in 16-bit fixed point),
 * applied to the decoded RGB (libjpeg's own YCbCr -> Y output differs by 1 here and there).
 * Alpha is dropped (not blended), 16-bit samples keep their high byte, palettes are
 * expanded, and a gray image asked for as RGB/BGR gets its value in all three channels.
 *
 * Hostile input: an image declaring more than KILN_IMAGE_MAX_PIXELS pixels is refused with
 * KILN_E_LIMIT before any pixel memory is allocated; truncated or corrupt data gives
 * KILN_E_INVALID_ARG with the codec's message. libjpeg's and libpng's fatal errors longjmp
 * back here (they never exit), libtiff and OpenJPEG report through per-handle callbacks,
 * and no codec writes to stderr. Pixel buffers are kernel scratch, so every error path
 * frees them.
 *
 * Prepare decodes pixel_format once; an unknown one is reported by run, after the checks
 * of the input, as before.
 */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include "cpu/kernel.h"

#ifdef KILN_HAVE_JPEG
#include <jerror.h>
#include <jpeglib.h>
#endif
#ifdef KILN_HAVE_PNG
#include <png.h>
#endif
#ifdef KILN_HAVE_TIFF
#include <tiffio.h>
#endif
#ifdef KILN_HAVE_WEBP
#include <webp/decode.h>
#endif
#ifdef KILN_HAVE_OPENJPEG
#include <openjpeg.h>
#endif

/* Largest image (W * H) we decode: 2^28 pixels (16384 x 16384), 768 MiB as RGB. */
#define KILN_IMAGE_MAX_PIXELS (INT64_C(1) << 28)

/* One decode in progress. Decoders fill `w`, `h`, `ch` (1 or 3) and `px` (h rows of w * ch
 * bytes, kernel scratch) through img_alloc. */
struct dec {
    struct kiln_kctx *k;
    const uint8_t *p;
    size_t n;
    int64_t w, h;
    int ch;
    uint8_t *px;
    char msg[200]; /* a codec's last error message */
};

/* Checks the declared size against the cap and allocates the pixel buffer. `fmt` names
 * the format in messages. */
static kiln_status img_alloc(struct dec *d, const char *fmt, int64_t w, int64_t h, int ch)
{
    if (w <= 0 || h <= 0)
        return kiln_kfail(d->k, KILN_E_INVALID_ARG, "%s image declares %lld x %lld pixels; "
                          "expected both > 0", fmt, (long long)w, (long long)h);
    if (w > KILN_IMAGE_MAX_PIXELS || h > KILN_IMAGE_MAX_PIXELS || w * h > KILN_IMAGE_MAX_PIXELS)
        return kiln_kfail(d->k, KILN_E_LIMIT, "%s image declares %lld x %lld pixels; the limit "
                          "is 2^28 pixels", fmt, (long long)w, (long long)h);
    d->w = w, d->h = h, d->ch = ch;
    return kiln_scratch(d->k, (size_t)(w * h * ch), (void **)&d->px);
}

static uint32_t rd_le16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}
static uint32_t rd_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ------------------------------------------------------------------ BMP */

/* A channel described by a bit mask, scaled to 0..255. */
struct bmask {
    uint32_t mask;
    int shift, bits;
};

static struct bmask bmask_make(uint32_t m)
{
    struct bmask b = {m, 0, 0};
    if (!m) return b;
    while (!(m & 1)) m >>= 1, b.shift++;
    while (m & 1) m >>= 1, b.bits++;
    return b;
}

static uint8_t bmask_get(struct bmask b, uint32_t v)
{
    if (!b.bits) return 0;
    uint32_t x = (v & b.mask) >> b.shift;
    if (b.bits >= 8) return (uint8_t)(x >> (b.bits - 8));
    uint32_t max = (1u << b.bits) - 1;
    return (uint8_t)((x * 255 + max / 2) / max);
}

/* Windows bitmaps: core (12-byte) and info (40/52/56/108/124-byte) headers; 1/4/8-bit
 * palettes, 16/32-bit with BI_RGB or BI_BITFIELDS masks, 24-bit; bottom-up or top-down.
 * RLE compression and embedded JPEG/PNG are refused as unsupported. */
static kiln_status dec_bmp(struct dec *d)
{
    struct kiln_kctx *k = d->k;
    const uint8_t *p = d->p;
    size_t n = d->n;
    if (n < 26) return kiln_kfail(k, KILN_E_INVALID_ARG, "BMP data is %zu bytes; too short for its headers", n);
    uint32_t off = rd_le32(p + 10), hsize = rd_le32(p + 14);
    int64_t w, h;
    uint32_t bpp, comp = 0, nclr = 0;
    int pal_entry = 4;
    if (hsize == 12) {
        w = rd_le16(p + 18), h = rd_le16(p + 20), bpp = rd_le16(p + 24);
        pal_entry = 3;
    } else if (hsize >= 40 && hsize <= 124) {
        if (n < 14 + (size_t)hsize)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "BMP data is %zu bytes; its header needs %u", n, 14 + hsize);
        w = (int32_t)rd_le32(p + 18), h = (int32_t)rd_le32(p + 22);
        bpp = rd_le16(p + 28), comp = rd_le32(p + 30), nclr = rd_le32(p + 46);
    } else {
        return kiln_kfail(k, KILN_E_INVALID_ARG, "BMP info header size %u; expected 12, or 40 to 124", hsize);
    }
    bool top_down = h < 0;
    if (top_down) h = -h;
    /* Masks: inside the header from 52 bytes on, else right after a 40-byte header. */
    struct bmask mr, mg, mb;
    if (comp == 3 || comp == 6) { /* BI_BITFIELDS, BI_ALPHABITFIELDS */
        if (bpp != 16 && bpp != 32)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "BMP with bit-field masks has %u bits per pixel; expected 16 or 32", bpp);
        if (n < 14 + 40 + 12) return kiln_kfail(k, KILN_E_INVALID_ARG, "BMP data ends inside its colour masks");
        mr = bmask_make(rd_le32(p + 54)), mg = bmask_make(rd_le32(p + 58)), mb = bmask_make(rd_le32(p + 62));
    } else if (comp == 0) {
        if (bpp == 16)
            mr = bmask_make(0x7C00), mg = bmask_make(0x03E0), mb = bmask_make(0x001F);
        else
            mr = bmask_make(0xFF0000), mg = bmask_make(0xFF00), mb = bmask_make(0xFF);
    } else {
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "BMP compression %u (RLE or embedded JPEG/PNG) is "
                          "not supported; only uncompressed and bit-field bitmaps are", comp);
    }
    if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "BMP has %u bits per pixel; expected 1, 4, 8, 16, 24 or 32", bpp);
    if (w <= 0 || h <= 0)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "BMP declares %lld x %lld pixels", (long long)w, (long long)h);

    /* Palette (zero-filled to 256 entries so any index is safe: out of range reads black). */
    uint8_t pal[256][3] = {{0}};
    if (bpp <= 8) {
        size_t count = nclr && nclr <= (1u << bpp) ? nclr : (1u << bpp);
        size_t at = 14 + (size_t)hsize + (comp == 3 && hsize == 40 ? 12 : 0);
        for (size_t i = 0; i < count && at + (size_t)pal_entry * (i + 1) <= n; i++) {
            const uint8_t *e = p + at + (size_t)pal_entry * i;
            pal[i][0] = e[2], pal[i][1] = e[1], pal[i][2] = e[0];
        }
    }
    /* Rows are padded to 4 bytes; w and h are < 2^31, so this cannot overflow 64 bits. */
    uint64_t stride = (((uint64_t)w * bpp + 31) / 32) * 4;
    KILN_TRY(img_alloc(d, "BMP", w, h, 3));
    if (off > n || stride * (uint64_t)h > n - off)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "BMP pixel data is truncated: %lld rows of %llu "
                          "bytes from offset %u do not fit in %zu bytes", (long long)h,
                          (unsigned long long)stride, off, n);
    for (int64_t y = 0; y < h; y++) {
        const uint8_t *row = p + off + stride * (uint64_t)(top_down ? y : h - 1 - y);
        uint8_t *o = d->px + (size_t)(y * w * 3);
        for (int64_t x = 0; x < w; x++, o += 3) {
            switch (bpp) {
            case 1: case 4: case 8: {
                unsigned bit = (unsigned)((uint64_t)x * bpp);
                unsigned idx = (row[bit / 8] >> (8 - bpp - bit % 8)) & ((1u << bpp) - 1);
                memcpy(o, pal[idx], 3);
                break;
            }
            case 24:
                o[0] = row[x * 3 + 2], o[1] = row[x * 3 + 1], o[2] = row[x * 3];
                break;
            default: {
                uint32_t v = bpp == 16 ? rd_le16(row + x * 2) : rd_le32(row + x * 4);
                o[0] = bmask_get(mr, v), o[1] = bmask_get(mg, v), o[2] = bmask_get(mb, v);
            }
            }
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ PNM */

/* Reads one header token (a decimal number <= 65535) at *pos, skipping whitespace and
 * '#' comments. Returns -1 when there is none. */
static int32_t pnm_num(const uint8_t *p, size_t n, size_t *pos)
{
    size_t i = *pos;
    for (;;) {
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r' || p[i] == '\v' || p[i] == '\f')) i++;
        if (i < n && p[i] == '#') {
            while (i < n && p[i] != '\n' && p[i] != '\r') i++;
            continue;
        }
        break;
    }
    if (i >= n || p[i] < '0' || p[i] > '9') return -1;
    int32_t v = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        v = v * 10 + (p[i++] - '0');
        if (v > 1 << 24) return -1;
    }
    *pos = i;
    return v;
}

/* Netpbm P1..P6 (PBM/PGM/PPM, ASCII and raw), maxval 1..65535. Samples are scaled to
 * 0..255 with rounding; in bitmaps 1 is black. PAM (P7) is refused. */
static kiln_status dec_pnm(struct dec *d)
{
    struct kiln_kctx *k = d->k;
    const uint8_t *p = d->p;
    size_t n = d->n, pos = 2;
    int kind = p[1] - '0';
    bool bitmap = kind == 1 || kind == 4, ascii = kind <= 3;
    int ch = kind == 3 || kind == 6 ? 3 : 1;
    int32_t w = pnm_num(p, n, &pos), h = pnm_num(p, n, &pos);
    int32_t maxval = bitmap ? 1 : pnm_num(p, n, &pos);
    if (w <= 0 || h <= 0 || maxval <= 0 || maxval > 65535)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "PNM P%d header: width %d, height %d, maxval %d; "
                          "expected positive sizes and maxval 1..65535", kind, w, h, maxval);
    KILN_TRY(img_alloc(d, "PNM", w, h, ch));
    size_t count = (size_t)w * (size_t)h * (size_t)ch;
    if (!ascii) {
        pos++; /* exactly one whitespace byte ends the header */
        size_t need = bitmap ? (((size_t)w + 7) / 8) * (size_t)h : count * (maxval > 255 ? 2 : 1);
        if (pos > n || n - pos < need)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "PNM P%d pixel data is truncated: %zu bytes "
                              "needed, %zu present", kind, need, pos > n ? 0 : n - pos);
    }
    const uint8_t *q = p + pos;
    for (size_t i = 0; i < count; i++) {
        uint32_t v;
        if (bitmap && !ascii) {
            size_t x = i % (size_t)w, y = i / (size_t)w, rowb = ((size_t)w + 7) / 8;
            v = (q[y * rowb + x / 8] >> (7 - x % 8)) & 1;
        } else if (bitmap) { /* P1 samples may run together: "0101" */
            while (pos < n && p[pos] != '0' && p[pos] != '1') {
                if (p[pos] == '#')
                    while (pos < n && p[pos] != '\n') pos++;
                else
                    pos++;
            }
            if (pos >= n) goto short_ascii;
            v = (uint32_t)(p[pos++] - '0');
        } else if (ascii) {
            int32_t s = pnm_num(p, n, &pos);
            if (s < 0) goto short_ascii;
            v = (uint32_t)s;
        } else if (maxval > 255) {
            v = (uint32_t)q[2 * i] << 8 | q[2 * i + 1];
        } else {
            v = q[i];
        }
        if (bitmap) {
            d->px[i] = v ? 0 : 255;
        } else {
            if (v > (uint32_t)maxval) v = (uint32_t)maxval;
            d->px[i] = maxval == 255 ? (uint8_t)v : (uint8_t)((v * 255 + (uint32_t)maxval / 2) / (uint32_t)maxval);
        }
    }
    return KILN_OK;
short_ascii:
    return kiln_kfail(k, KILN_E_INVALID_ARG, "PNM P%d data ends before %zu samples (%d x %d x %d)",
                      kind, count, w, h, ch);
}

/* ------------------------------------------------------------------ JPEG */

#ifdef KILN_HAVE_JPEG
struct jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    struct dec *d;
};

static void jpeg_fail(j_common_ptr c)
{
    struct jpeg_err *e = (struct jpeg_err *)c->err;
    char m[JMSG_LENGTH_MAX];
    c->err->format_message(c, m);
    snprintf(e->d->msg, sizeof e->d->msg, "%s", m);
    longjmp(e->jb, 1);
}

/* Warnings are silent, except that data ending early is an error: libjpeg would pad the
 * image with gray and call it a success. */
static void jpeg_emit(j_common_ptr c, int level)
{
    if (level < 0) {
        if (c->err->msg_code == JWRN_JPEG_EOF) jpeg_fail(c);
        c->err->num_warnings++;
    }
}

static void jpeg_quiet(j_common_ptr c)
{
    (void)c;
}

static kiln_status dec_jpeg(struct dec *d)
{
    struct jpeg_decompress_struct ci;
    struct jpeg_err je;
    memset(&ci, 0, sizeof ci);
    ci.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = jpeg_fail;
    je.pub.emit_message = jpeg_emit;
    je.pub.output_message = jpeg_quiet;
    je.d = d;
    /* Our own failures (limit, memory) travel in st; libjpeg's arrive through the longjmp. */
    volatile kiln_status st = KILN_OK;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&ci);
        return kiln_kfail(d->k, KILN_E_INVALID_ARG, "JPEG data is invalid: %s", d->msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, d->p, (unsigned long)d->n);
    jpeg_read_header(&ci, TRUE);
    /* 1 GiB for libjpeg's own buffers (progressive images keep all coefficients). */
    ci.mem->max_memory_to_use = 1L << 30;
    bool cmyk = ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK;
    ci.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    st = img_alloc(d, "JPEG", ci.image_width, ci.image_height, 3);
    if (st) goto out;
    uint8_t *rowbuf = NULL;
    if (cmyk) {
        st = kiln_scratch(d->k, (size_t)ci.image_width * 4, (void **)&rowbuf);
        if (st) goto out;
    }
    jpeg_start_decompress(&ci);
    if ((int64_t)ci.output_width != d->w || (int64_t)ci.output_height != d->h ||
        ci.output_components != (cmyk ? 4 : d->ch)) {
        snprintf(d->msg, sizeof d->msg, "decoder output %ux%ux%d differs from header", ci.output_width,
                 ci.output_height, ci.output_components);
        jpeg_destroy_decompress(&ci);
        return kiln_kfail(d->k, KILN_E_INTERNAL, "JPEG: %s", d->msg);
    }
    while (ci.output_scanline < ci.output_height) {
        uint8_t *o = d->px + (size_t)ci.output_scanline * (size_t)d->w * (size_t)d->ch;
        JSAMPROW row = cmyk ? rowbuf : o;
        jpeg_read_scanlines(&ci, &row, 1);
        /* Adobe writes CMYK inverted (as nearly every CMYK JPEG is): R = C * K / 255. */
        for (int64_t x = 0; cmyk && x < d->w; x++) {
            unsigned kk = rowbuf[x * 4 + 3];
            for (int c = 0; c < 3; c++) o[x * 3 + c] = (uint8_t)((rowbuf[x * 4 + c] * kk + 127) / 255);
        }
    }
    jpeg_finish_decompress(&ci);
out:
    jpeg_destroy_decompress(&ci);
    return st;
}
#endif

/* ------------------------------------------------------------------ PNG */

#ifdef KILN_HAVE_PNG
struct png_ctx {
    struct dec *d;
    size_t pos;
};

static void png_fail(png_structp png, png_const_charp msg)
{
    struct png_ctx *c = png_get_error_ptr(png);
    snprintf(c->d->msg, sizeof c->d->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_warn(png_structp png, png_const_charp msg)
{
    (void)png, (void)msg;
}

static void png_read_mem(png_structp png, png_bytep out, size_t len)
{
    struct png_ctx *c = png_get_io_ptr(png);
    if (len > c->d->n - c->pos) png_error(png, "data ends early (truncated PNG)");
    memcpy(out, c->d->p + c->pos, len);
    c->pos += len;
}

static kiln_status dec_png(struct dec *d)
{
    struct png_ctx c = {d, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_fail, png_warn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return kiln_kfail(d->k, KILN_E_NOMEM, "out of memory creating the PNG decoder");
    }
    volatile kiln_status st = KILN_OK;
    png_bytep *rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return kiln_kfail(d->k, KILN_E_INVALID_ARG, "PNG data is invalid: %s", d->msg);
    }
    png_set_read_fn(png, &c, png_read_mem);
    /* Our pixel cap decides; libpng's 1e6-per-side default would refuse valid strips. */
    png_set_user_limits(png, 1u << 28, 1u << 28);
    png_set_chunk_malloc_max(png, (png_alloc_size_t)1 << 26);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int type = png_get_color_type(png, info);
    int ch = type & PNG_COLOR_MASK_COLOR ? 3 : 1; /* palette images have the colour bit */
    png_set_strip_16(png);
    png_set_strip_alpha(png);
    png_set_palette_to_rgb(png);
    png_set_expand_gray_1_2_4_to_8(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    st = img_alloc(d, "PNG", w, h, ch);
    if (st) goto out;
    if (png_get_rowbytes(png, info) != (size_t)w * (size_t)ch) {
        st = kiln_kfail(d->k, KILN_E_INTERNAL, "PNG rows are %zu bytes after conversion; expected %zu",
                        (size_t)png_get_rowbytes(png, info), (size_t)w * (size_t)ch);
        goto out;
    }
    st = kiln_scratch(d->k, (size_t)h * sizeof *rows, (void **)&rows);
    if (st) goto out;
    for (png_uint_32 y = 0; y < h; y++) rows[y] = d->px + (size_t)y * w * (size_t)ch;
    png_read_image(png, rows);
out:
    png_destroy_read_struct(&png, &info, NULL);
    return st;
}
#endif

/* ------------------------------------------------------------------ TIFF */

#ifdef KILN_HAVE_TIFF
struct tiff_mem {
    struct dec *d;
    toff_t pos;
};

static tmsize_t tiff_read(thandle_t h, void *buf, tmsize_t len)
{
    struct tiff_mem *m = (struct tiff_mem *)h;
    if (len < 0) return -1;
    toff_t left = m->pos < m->d->n ? m->d->n - m->pos : 0;
    if ((toff_t)len > left) len = (tmsize_t)left;
    memcpy(buf, m->d->p + m->pos, (size_t)len);
    m->pos += (toff_t)len;
    return len;
}

static tmsize_t tiff_write(thandle_t h, void *buf, tmsize_t len)
{
    (void)h, (void)buf, (void)len;
    return -1;
}

static toff_t tiff_seek(thandle_t h, toff_t off, int whence)
{
    struct tiff_mem *m = (struct tiff_mem *)h;
    toff_t base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->d->n : 0;
    if (off > UINT64_MAX - base) return (toff_t)-1;
    m->pos = base + off; /* past the end is allowed; reads there return 0 bytes */
    return m->pos;
}

static int tiff_close(thandle_t h)
{
    (void)h;
    return 0;
}

static toff_t tiff_size(thandle_t h)
{
    return ((struct tiff_mem *)h)->d->n;
}

static int tiff_map(thandle_t h, void **base, toff_t *size)
{
    (void)h, (void)base, (void)size;
    return 0;
}

static void tiff_unmap(thandle_t h, void *base, toff_t size)
{
    (void)h, (void)base, (void)size;
}

static int tiff_on_error(TIFF *t, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)t, (void)module;
    struct dec *d = user;
    if (!d->msg[0]) vsnprintf(d->msg, sizeof d->msg, fmt, ap); /* the first error is the cause */
    return 1;
}

static int tiff_on_warning(TIFF *t, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)t, (void)user, (void)module, (void)fmt, (void)ap;
    return 1;
}

/* Any TIFF libtiff's RGBA interface reads (strips, tiles, palettes, YCbCr, 16-bit, ...).
 * The first image of the file is used. */
static kiln_status dec_tiff(struct dec *d)
{
    struct tiff_mem m = {d, 0};
    TIFFOpenOptions *o = TIFFOpenOptionsAlloc();
    if (!o) return kiln_kfail(d->k, KILN_E_NOMEM, "out of memory creating the TIFF decoder");
    TIFFOpenOptionsSetErrorHandlerExtR(o, tiff_on_error, d);
    TIFFOpenOptionsSetWarningHandlerExtR(o, tiff_on_warning, d);
    TIFFOpenOptionsSetMaxSingleMemAlloc(o, (tmsize_t)1 << 30);
    TIFF *t = TIFFClientOpenExt("ImageDecoder input", "rm", (thandle_t)&m, tiff_read, tiff_write,
                                tiff_seek, tiff_close, tiff_size, tiff_map, tiff_unmap, o);
    TIFFOpenOptionsFree(o);
    if (!t) return kiln_kfail(d->k, KILN_E_INVALID_ARG, "TIFF data is invalid: %s", d->msg[0] ? d->msg : "cannot open");
    kiln_status st = KILN_OK;
    uint32_t w = 0, h = 0;
    uint16_t spp = 1, photo = PHOTOMETRIC_RGB;
    TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w);
    TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h);
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetField(t, TIFFTAG_PHOTOMETRIC, &photo);
    bool gray = (photo == PHOTOMETRIC_MINISBLACK || photo == PHOTOMETRIC_MINISWHITE) && spp <= 2;
    uint32_t *raster = NULL;
    st = img_alloc(d, "TIFF", w, h, gray ? 1 : 3);
    if (st) goto out;
    st = kiln_scratch(d->k, (size_t)w * h * 4, (void **)&raster);
    if (st) goto out;
    if (!TIFFReadRGBAImageOriented(t, w, h, raster, ORIENTATION_TOPLEFT, 1)) {
        st = kiln_kfail(d->k, KILN_E_INVALID_ARG, "TIFF data is invalid: %s", d->msg[0] ? d->msg : "cannot decode the image");
        goto out;
    }
    for (size_t i = 0, np = (size_t)w * h; i < np; i++) {
        uint32_t v = raster[i];
        if (gray) {
            d->px[i] = (uint8_t)TIFFGetR(v);
        } else {
            d->px[3 * i] = (uint8_t)TIFFGetR(v), d->px[3 * i + 1] = (uint8_t)TIFFGetG(v);
            d->px[3 * i + 2] = (uint8_t)TIFFGetB(v);
        }
    }
out:
    TIFFClose(t);
    return st;
}
#endif

/* ------------------------------------------------------------------ WebP */

#ifdef KILN_HAVE_WEBP
static kiln_status dec_webp(struct dec *d)
{
    int w, h;
    if (!WebPGetInfo(d->p, d->n, &w, &h))
        return kiln_kfail(d->k, KILN_E_INVALID_ARG, "WebP data is invalid: cannot read its header");
    KILN_TRY(img_alloc(d, "WebP", w, h, 3));
    size_t size = (size_t)w * (size_t)h * 3;
    if (!WebPDecodeRGBInto(d->p, d->n, d->px, size, w * 3))
        return kiln_kfail(d->k, KILN_E_INVALID_ARG, "WebP data is invalid or truncated (%dx%d declared)", w, h);
    return KILN_OK;
}
#endif

/* ------------------------------------------------------------------ JPEG 2000 */

#ifdef KILN_HAVE_OPENJPEG
struct opj_mem {
    struct dec *d;
    size_t pos;
};

static OPJ_SIZE_T opj_mem_read(void *buf, OPJ_SIZE_T len, void *user)
{
    struct opj_mem *m = user;
    if (m->pos >= m->d->n) return (OPJ_SIZE_T)-1;
    if (len > m->d->n - m->pos) len = m->d->n - m->pos;
    memcpy(buf, m->d->p + m->pos, len);
    m->pos += len;
    return len;
}

static OPJ_OFF_T opj_mem_skip(OPJ_OFF_T off, void *user)
{
    struct opj_mem *m = user;
    if (off < 0) {
        if ((uint64_t)-off > m->pos) return -1;
    } else if ((uint64_t)off > m->d->n - m->pos) {
        off = (OPJ_OFF_T)(m->d->n - m->pos);
    }
    m->pos = (size_t)((OPJ_OFF_T)m->pos + off);
    return off;
}

static OPJ_BOOL opj_mem_seek(OPJ_OFF_T off, void *user)
{
    struct opj_mem *m = user;
    if (off < 0 || (uint64_t)off > m->d->n) return OPJ_FALSE;
    m->pos = (size_t)off;
    return OPJ_TRUE;
}

static void opj_on_error(const char *msg, void *user)
{
    struct dec *d = user;
    if (d->msg[0]) return; /* the first error is the cause */
    snprintf(d->msg, sizeof d->msg, "%s", msg);
    size_t l = strlen(d->msg);
    if (l && d->msg[l - 1] == '\n') d->msg[l - 1] = 0;
}

static void opj_quiet(const char *msg, void *user)
{
    (void)msg, (void)user;
}

/* Scales one sample of precision `prec` (signed or not) to 0..255. */
static uint8_t opj_sample(int32_t v, const opj_image_comp_t *c)
{
    int64_t x = v;
    if (c->sgnd) x += INT64_C(1) << (c->prec - 1);
    if (c->prec > 8) x >>= c->prec - 8;
    else if (c->prec < 8) x = x * 255 / ((INT64_C(1) << c->prec) - 1);
    return (uint8_t)(x < 0 ? 0 : x > 255 ? 255 : x);
}

/* JP2 files or raw J2K codestreams whose first 1 or 3 components are at full resolution
 * (gray, gray+alpha, RGB, RGBA; extra components ignored). */
static kiln_status dec_jp2(struct dec *d, bool jp2)
{
    struct opj_mem m = {d, 0};
    kiln_status st = KILN_OK;
    opj_image_t *img = NULL;
    opj_stream_t *s = opj_stream_create(1 << 16, OPJ_TRUE);
    opj_codec_t *c = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
    if (!s || !c) {
        st = kiln_kfail(d->k, KILN_E_NOMEM, "out of memory creating the JPEG 2000 decoder");
        goto out;
    }
    opj_stream_set_user_data(s, &m, NULL);
    opj_stream_set_user_data_length(s, d->n);
    opj_stream_set_read_function(s, opj_mem_read);
    opj_stream_set_skip_function(s, opj_mem_skip);
    opj_stream_set_seek_function(s, opj_mem_seek);
    opj_set_error_handler(c, opj_on_error, d);
    opj_set_warning_handler(c, opj_quiet, d);
    opj_set_info_handler(c, opj_quiet, d);
    opj_dparameters_t prm;
    opj_set_default_decoder_parameters(&prm);
    if (!opj_setup_decoder(c, &prm) || !opj_read_header(s, c, &img) || !img) goto bad;
    int64_t w = (int64_t)img->x1 - img->x0, h = (int64_t)img->y1 - img->y0;
    int ch = img->numcomps >= 3 ? 3 : 1;
    if (img->numcomps == 0) goto bad;
    st = img_alloc(d, "JPEG 2000", w, h, ch);
    if (st) goto out;
    if (!opj_decode(c, s, img) || !opj_end_decompress(c, s)) goto bad;
    for (int i = 0; i < ch; i++) {
        const opj_image_comp_t *cp = &img->comps[i];
        if (cp->w != (OPJ_UINT32)w || cp->h != (OPJ_UINT32)h || !cp->data || cp->prec < 1 || cp->prec > 31) {
            st = kiln_kfail(d->k, KILN_E_UNSUPPORTED, "JPEG 2000 component %d is %ux%u (precision %u) "
                            "for a %lldx%lld image; subsampled components are not supported",
                            i, cp->w, cp->h, cp->prec, (long long)w, (long long)h);
            goto out;
        }
    }
    for (size_t i = 0, np = (size_t)(w * h); i < np; i++)
        for (int j = 0; j < ch; j++) d->px[i * (size_t)ch + (size_t)j] = opj_sample(img->comps[j].data[i], &img->comps[j]);
    goto out;
bad:
    st = kiln_kfail(d->k, KILN_E_INVALID_ARG, "JPEG 2000 data is invalid: %s", d->msg[0] ? d->msg : "cannot decode");
out:
    if (img) opj_image_destroy(img);
    if (c) opj_destroy_codec(c);
    if (s) opj_stream_destroy(s);
    return st;
}
#endif

/* ------------------------------------------------------------------ ImageDecoder */

enum img_fmt { FMT_UNKNOWN, FMT_BMP, FMT_JPEG, FMT_JP2, FMT_J2K, FMT_PNG, FMT_PNM, FMT_TIFF, FMT_WEBP };

static enum img_fmt sniff(const uint8_t *p, size_t n)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    static const uint8_t jp2_sig[12] = {0, 0, 0, 12, 'j', 'P', ' ', ' ', '\r', '\n', 0x87, '\n'};
    if (n >= 2 && p[0] == 'B' && p[1] == 'M') return FMT_BMP;
    if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return FMT_JPEG;
    if (n >= 8 && !memcmp(p, png_sig, 8)) return FMT_PNG;
    if (n >= 12 && !memcmp(p, jp2_sig, 12)) return FMT_JP2;
    if (n >= 4 && p[0] == 0xFF && p[1] == 0x4F && p[2] == 0xFF && p[3] == 0x51) return FMT_J2K;
    if (n >= 3 && p[0] == 'P' && p[1] >= '1' && p[1] <= '6' &&
        (p[2] == ' ' || p[2] == '\t' || p[2] == '\n' || p[2] == '\r' || p[2] == '#'))
        return FMT_PNM;
    if (n >= 4 && ((p[0] == 'I' && p[1] == 'I' && p[2] == 42 && p[3] == 0) ||
                   (p[0] == 'M' && p[1] == 'M' && p[2] == 0 && p[3] == 42) ||
                   (p[0] == 'I' && p[1] == 'I' && p[2] == 43 && p[3] == 0) || /* BigTIFF */
                   (p[0] == 'M' && p[1] == 'M' && p[2] == 0 && p[3] == 43)))
        return FMT_TIFF;
    if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) return FMT_WEBP;
    return FMT_UNKNOWN;
}

#if !defined(KILN_HAVE_JPEG) || !defined(KILN_HAVE_PNG) || !defined(KILN_HAVE_TIFF) || \
    !defined(KILN_HAVE_WEBP) || !defined(KILN_HAVE_OPENJPEG)
static kiln_status no_codec(struct kiln_kctx *k, const char *fmt, const char *lib)
{
    return kiln_kfail(k, KILN_E_UNSUPPORTED, "input is a %s image, but this build of kiln has no "
                      "%s decoder (built without %s)", fmt, fmt, lib);
}
#endif

struct image_state {
    const char *pixel_format;
    int mode; /* 0 RGB, 1 BGR, 2 Grayscale, -1 none of them */
};

static kiln_status image_decoder_prepare(struct kiln_kprep *p)
{
    struct image_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    const char *pf = kiln_attr_s(&p->kc, "pixel_format", "RGB");
    s->pixel_format = pf;
    s->mode = !strcmp(pf, "RGB") ? 0 : !strcmp(pf, "BGR") ? 1 : !strcmp(pf, "Grayscale") ? 2 : -1;
    p->state = s;
    return KILN_OK;
}

static kiln_status image_decoder_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, image_decoder_prepare, image_decoder_run);
    const struct image_state *is = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (x->dtype != KILN_DTYPE_U8)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'encoded_stream' is %s; expected uint8",
                          kiln_dtype_name(x->dtype));
    if (x->rank != 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'encoded_stream' has rank %d; expected 1", x->rank);
    int mode = is->mode; /* 0 RGB, 1 BGR, 2 Grayscale */
    if (mode < 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "pixel_format '%s'; expected RGB, BGR or Grayscale",
                          is->pixel_format);

    struct dec d;
    memset(&d, 0, sizeof d);
    d.k = k, d.p = x->data, d.n = kiln_tensor_numel(x);
    if (!d.p) d.n = 0;
    kiln_status st;
    switch (sniff(d.p, d.n)) {
    case FMT_BMP: st = dec_bmp(&d); break;
    case FMT_PNM: st = dec_pnm(&d); break;
#ifdef KILN_HAVE_JPEG
    case FMT_JPEG: st = dec_jpeg(&d); break;
#else
    case FMT_JPEG: st = no_codec(k, "JPEG", "libjpeg"); break;
#endif
#ifdef KILN_HAVE_PNG
    case FMT_PNG: st = dec_png(&d); break;
#else
    case FMT_PNG: st = no_codec(k, "PNG", "libpng"); break;
#endif
#ifdef KILN_HAVE_TIFF
    case FMT_TIFF: st = dec_tiff(&d); break;
#else
    case FMT_TIFF: st = no_codec(k, "TIFF", "libtiff"); break;
#endif
#ifdef KILN_HAVE_WEBP
    case FMT_WEBP: st = dec_webp(&d); break;
#else
    case FMT_WEBP: st = no_codec(k, "WebP", "libwebp"); break;
#endif
#ifdef KILN_HAVE_OPENJPEG
    case FMT_JP2: st = dec_jp2(&d, true); break;
    case FMT_J2K: st = dec_jp2(&d, false); break;
#else
    case FMT_JP2:
    case FMT_J2K: st = no_codec(k, "JPEG 2000", "OpenJPEG"); break;
#endif
    default: {
        char head[40] = "";
        for (size_t i = 0; i < d.n && i < 8; i++)
            snprintf(head + 3 * i, sizeof head - 3 * i, "%02x ", d.p[i]);
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 'encoded_stream' (%zu bytes, starting %s) "
                          "is not BMP, JPEG, JPEG 2000, PNG, PNM, TIFF or WebP", d.n,
                          d.n ? head : "with nothing");
    }
    }
    if (st) return st;

    int oc = mode == 2 ? 1 : 3;
    int64_t dims[3] = {d.h, d.w, oc};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_U8, 3, dims, &y));
    uint8_t *o = y->data;
    const uint8_t *s = d.px;
    size_t np = (size_t)(d.w * d.h);
    if (d.ch == oc && mode != 1) {
        memcpy(o, s, np * (size_t)oc);
    } else if (d.ch == 1) { /* gray -> three equal channels */
        for (size_t i = 0; i < np; i++) o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = s[i];
    } else if (mode == 1) {
        for (size_t i = 0; i < np; i++)
            o[3 * i] = s[3 * i + 2], o[3 * i + 1] = s[3 * i + 1], o[3 * i + 2] = s[3 * i];
    } else { /* RGB -> gray as Pillow's convert("L") */
        for (size_t i = 0; i < np; i++)
            o[i] = (uint8_t)((19595u * s[3 * i] + 38470u * s[3 * i + 1] + 7471u * s[3 * i + 2] + 32768u) >> 16);
    }
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_image[] = {
    {"ImageDecoder", "", 20, 0, image_decoder_run, image_decoder_prepare, 0},
    {0},
};
