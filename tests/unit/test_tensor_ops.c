/* test_tensor_ops.c: the shape/data-movement (tensor family) and Gather/Scatter (index
 * family) CPU kernels.
 *
 * Random cases compare kernels with naive references that walk explicit coordinates:
 * Transpose over random ranks 0..6 and permutations, Slice with random starts/ends/steps
 * (negative, out of bounds), Expand and Tile against per-element broadcasting/modulo, Split
 * followed by Concat giving back the input, DepthToSpace/SpaceToDepth as inverses. Small
 * hand-checked cases pin Pad's four modes, Unique's four outputs (sorted and not), ScatterND
 * reduction with duplicate indices, nearest Resize, Reshape's 0/-1 rules, and STRING tensors
 * (contents copied into newly owned strings). Bad inputs (out-of-range indices, impossible
 * reshapes, repeated axes) must fail with a status and a message, never crash: the sanitizer
 * build checks that nothing reads out of bounds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernel.h"
#include "test_support.h"

/* ------------------------------------------------------------------ running one node */

struct run {
    const char *op;
    struct attrs at;
    struct kiln_value *in[6], *out[4];
    size_t n_in, n_out;
    kiln_err err;
};

/* Inputs are borrowed (NULL = absent); outputs are freed by run_fini. */
static void run_init(struct run *r, const char *op, int n_in, int n_out)
{
    memset(r, 0, sizeof *r);
    r->op = op;
    r->n_in = (size_t)n_in;
    r->n_out = (size_t)n_out;
}

static kiln_status run_exec(struct run *r, int opset)
{
    return run_node("", r->op, opset, r->at.a, r->at.n, r->in, r->n_in, r->out, r->n_out,
                    &r->err);
}

static void run_fini(struct run *r)
{
    free_all(r->out, 4);
    memset(r->out, 0, sizeof r->out);
}

/* ------------------------------------------------------------------ tensors */

/* int32 tensor holding 0, 1, 2, ... (so each value names its own linear index). */
static struct kiln_value *iota(int rank, const int64_t *dims)
{
    struct kiln_value *v = new_tensor(KILN_DTYPE_I32, rank, dims);
    size_t n = kiln_tensor_numel(&v->t);
    for (size_t i = 0; i < n; i++) ((int32_t *)v->t.data)[i] = (int32_t)i;
    return v;
}

static struct kiln_value *ints(kiln_dtype dt, int rank, const int64_t *dims, const int64_t *vals)
{
    struct kiln_value *v = new_tensor(dt, rank, dims);
    size_t n = kiln_tensor_numel(&v->t);
    for (size_t i = 0; i < n; i++) kiln_tensor_set_f64(&v->t, i, (double)vals[i]);
    if (dt == KILN_DTYPE_I64) memcpy(v->t.data, vals, n * sizeof *vals);
    return v;
}

static struct kiln_value *vec64(int64_t n, const int64_t *vals)
{
    return ints(KILN_DTYPE_I64, 1, &n, vals);
}

static bool equal_i64(const struct kiln_value *v, int64_t n, const int64_t *want)
{
    if (!v || v->t.rank != 1 || v->t.dims[0] != n) return false;
    for (int64_t i = 0; i < n; i++)
        if (kiln_tensor_get_i64(&v->t, (size_t)i) != want[i]) return false;
    return true;
}

static void rnd_shape(int rank, int64_t *dims, int maxd)
{
    for (int a = 0; a < rank; a++) dims[a] = 1 + rng_int_low(maxd);
}

static size_t numel(int rank, const int64_t *dims)
{
    size_t n = 1;
    for (int a = 0; a < rank; a++) n *= (size_t)dims[a];
    return n;
}

/* Splits linear index i of shape dims into coordinates. */
static void coords(size_t i, int rank, const int64_t *dims, int64_t *c)
{
    for (int a = rank - 1; a >= 0; a--) {
        c[a] = (int64_t)(i % (size_t)dims[a]);
        i /= (size_t)dims[a];
    }
}
static size_t linear(int rank, const int64_t *dims, const int64_t *c)
{
    size_t l = 0;
    for (int a = 0; a < rank; a++) l = l * (size_t)dims[a] + (size_t)c[a];
    return l;
}

/* ------------------------------------------------------------------ Transpose */

/* Dims up to max_dim: small ones walk every permutation path; from 16 the innermost swapped
 * dims take the tiled transpose of kiln_tops_strided_copy (odd sizes: partial tiles), or its
 * narrow column-by-column one when the inner swapped dim is below 16 (NCHW -> NHWC of a
 * 3-channel image). */
static void test_transpose_random(int iters, int max_rank, int max_dim)
{
    for (int iter = 0; iter < iters; iter++) {
        int rank = rng_int_low(max_rank + 1);
        int64_t dims[8], perm[8], od[8], c[8], ic[8];
        rnd_shape(rank, dims, max_dim);
        if (max_dim > 16) /* uniform, so that most dims reach the tiles */
            for (int a = 0; a < rank; a++) dims[a] = 1 + rng_int(max_dim);
        if (rank && rng_int_low(10) == 0) dims[rng_int_low(rank)] = 0;
        for (int a = 0; a < rank; a++) perm[a] = a;
        for (int a = rank - 1; a > 0; a--) {
            int b = rng_int_low(a + 1);
            int64_t t = perm[a];
            perm[a] = perm[b], perm[b] = t;
        }
        struct kiln_value *x = iota(rank, dims);
        struct run r;
        run_init(&r, "Transpose", 1, 1);
        r.in[0] = x;
        bool dflt = rng_int_low(4) == 0;
        if (dflt)
            for (int a = 0; a < rank; a++) perm[a] = rank - 1 - a;
        else
            add_ints(&r.at, "perm", perm, (size_t)rank);
        kiln_status st = run_exec(&r, 13);
        CHECK(st == KILN_OK, "Transpose: %s", r.err.msg);
        if (st == KILN_OK) {
            for (int a = 0; a < rank; a++) od[a] = dims[perm[a]];
            const struct kiln_tensor *y = &r.out[0]->t;
            CHECK(same_shape(y, rank, od), "Transpose shape");
            size_t n = numel(rank, od), bad = 0;
            for (size_t i = 0; i < n; i++) {
                coords(i, rank, od, c);
                for (int a = 0; a < rank; a++) ic[perm[a]] = c[a];
                if (((int32_t *)y->data)[i] != (int32_t)linear(rank, dims, ic)) bad++;
            }
            CHECK(bad == 0, "Transpose rank %d: %zu wrong elements", rank, bad);
        }
        run_fini(&r);
        kiln_value_free(x);
    }
}

static void test_transpose_bad_perm(void)
{
    /* A repeated axis in perm is an error. */
    int64_t dims[2] = {2, 3}, perm[2] = {0, 0};
    struct kiln_value *x = iota(2, dims);
    struct run r;
    run_init(&r, "Transpose", 1, 1);
    r.in[0] = x;
    add_ints(&r.at, "perm", perm, 2);
    CHECK(run_exec(&r, 13) != KILN_OK && strstr(r.err.msg, "perm"), "bad perm: '%s'", r.err.msg);
    run_fini(&r);
    kiln_value_free(x);
}

/* ------------------------------------------------------------------ Slice */

static void test_slice_random(void)
{
    for (int iter = 0; iter < 300; iter++) {
        int rank = 1 + rng_int_low(4);
        int64_t dims[4], st[4], en[4], ax[4], sp[4];
        rnd_shape(rank, dims, 6);
        int n = 1 + rng_int_low(rank);
        /* distinct axes, some spelled negative */
        int64_t order[4] = {0, 1, 2, 3};
        for (int a = rank - 1; a > 0; a--) {
            int b = rng_int_low(a + 1);
            int64_t t = order[a];
            order[a] = order[b], order[b] = t;
        }
        for (int j = 0; j < n; j++) {
            ax[j] = rng_int_low(2) ? order[j] : order[j] - rank;
            int64_t d = dims[order[j]];
            st[j] = rng_int_low(3) == 0 ? (rng_int_low(2) ? INT64_MAX : INT64_MIN) : rng_int_low((int)(2 * d + 5)) - d - 2;
            en[j] = rng_int_low(3) == 0 ? (rng_int_low(2) ? INT64_MAX : INT64_MIN) : rng_int_low((int)(2 * d + 5)) - d - 2;
            sp[j] = rng_int_low(2) ? 1 + rng_int_low(3) : -1 - rng_int_low(3);
        }
        /* Reference: per-axis index lists by stepping, as Python's range(*slice.indices(d)). */
        int64_t lists[4][16], cnt[4];
        for (int a = 0; a < rank; a++) {
            cnt[a] = dims[a];
            for (int64_t i = 0; i < dims[a]; i++) lists[a][i] = i;
        }
        for (int j = 0; j < n; j++) {
            int a = (int)order[j];
            int64_t d = dims[a], s = st[j], e = en[j], step = sp[j];
            if (s < 0) s = s < -d ? (step < 0 ? -1 : 0) : s + d;
            else if (s >= d) s = step < 0 ? d - 1 : d;
            if (e < 0) e = e < -d ? (step < 0 ? -1 : 0) : e + d;
            else if (e >= d) e = step < 0 ? d - 1 : d;
            cnt[a] = 0;
            for (int64_t i = s; step > 0 ? i < e : i > e; i += step) lists[a][cnt[a]++] = i;
        }
        struct kiln_value *x = iota(rank, dims), *vs = vec64(n, st), *ve = vec64(n, en),
                          *va = vec64(n, ax), *vp = vec64(n, sp);
        struct run r;
        run_init(&r, "Slice", 5, 1);
        r.in[0] = x, r.in[1] = vs, r.in[2] = ve, r.in[3] = va, r.in[4] = vp;
        kiln_status s = run_exec(&r, 13);
        CHECK(s == KILN_OK, "Slice: %s", r.err.msg);
        if (s == KILN_OK) {
            const struct kiln_tensor *y = &r.out[0]->t;
            CHECK(same_shape(y, rank, cnt), "Slice shape");
            size_t total = numel(rank, cnt), bad = 0;
            int64_t c[4], ic[4];
            for (size_t i = 0; i < total && same_shape(y, rank, cnt); i++) {
                coords(i, rank, cnt, c);
                for (int a = 0; a < rank; a++) ic[a] = lists[a][c[a]];
                if (((int32_t *)y->data)[i] != (int32_t)linear(rank, dims, ic)) bad++;
            }
            CHECK(bad == 0, "Slice: %zu wrong elements", bad);
        }
        run_fini(&r);
        kiln_value_free(x), kiln_value_free(vs), kiln_value_free(ve);
        kiln_value_free(va), kiln_value_free(vp);
    }
}

/* ------------------------------------------------------------------ Expand / Tile */

static void test_expand_tile_random(void)
{
    for (int iter = 0; iter < 200; iter++) {
        int rank = rng_int_low(4), srank = rng_int_low(5);
        int64_t dims[4], shape[4], od[4], c[4], ic[4];
        for (int a = 0; a < rank; a++) dims[a] = rng_int_low(2) ? 1 : 1 + rng_int_low(3);
        int orank = rank > srank ? rank : srank;
        for (int a = 0; a < srank; a++) shape[a] = 1 + rng_int_low(3);
        /* make the shapes compatible: where both exist and x isn't 1, shape takes x or 1 */
        for (int a = 0; a < orank; a++) {
            int ax = a - (orank - rank), as = a - (orank - srank);
            if (ax >= 0 && as >= 0 && dims[ax] != 1) shape[as] = rng_int_low(2) ? dims[ax] : 1;
            int64_t xd = ax >= 0 ? dims[ax] : 1, sd = as >= 0 ? shape[as] : 1;
            od[a] = xd == 1 ? sd : xd;
        }
        struct kiln_value *x = iota(rank, dims), *s = vec64(srank, shape);
        struct run r;
        run_init(&r, "Expand", 2, 1);
        r.in[0] = x, r.in[1] = s;
        kiln_status st = run_exec(&r, 13);
        CHECK(st == KILN_OK, "Expand: %s", r.err.msg);
        if (st == KILN_OK) {
            CHECK(same_shape(&r.out[0]->t, orank, od), "Expand shape");
            size_t bad = 0, n = numel(orank, od);
            for (size_t i = 0; i < n; i++) {
                coords(i, orank, od, c);
                for (int a = 0; a < rank; a++) ic[a] = dims[a] == 1 ? 0 : c[a + orank - rank];
                if (((int32_t *)r.out[0]->t.data)[i] != (int32_t)linear(rank, dims, ic)) bad++;
            }
            CHECK(bad == 0, "Expand: %zu wrong elements", bad);
        }
        run_fini(&r);
        kiln_value_free(x), kiln_value_free(s);

        /* Tile: out[c] = x[c mod dims] */
        int64_t rep[4];
        rank = 1 + rng_int_low(4);
        rnd_shape(rank, dims, 3);
        for (int a = 0; a < rank; a++) rep[a] = rng_int_low(4), od[a] = dims[a] * rep[a];
        x = iota(rank, dims), s = vec64(rank, rep);
        run_init(&r, "Tile", 2, 1);
        r.in[0] = x, r.in[1] = s;
        st = run_exec(&r, 13);
        CHECK(st == KILN_OK, "Tile: %s", r.err.msg);
        if (st == KILN_OK) {
            CHECK(same_shape(&r.out[0]->t, rank, od), "Tile shape");
            size_t bad = 0, n = numel(rank, od);
            for (size_t i = 0; i < n; i++) {
                coords(i, rank, od, c);
                for (int a = 0; a < rank; a++) ic[a] = c[a] % dims[a];
                if (((int32_t *)r.out[0]->t.data)[i] != (int32_t)linear(rank, dims, ic)) bad++;
            }
            CHECK(bad == 0, "Tile: %zu wrong elements", bad);
        }
        run_fini(&r);
        kiln_value_free(x), kiln_value_free(s);
    }
}

/* ------------------------------------------------------------------ Split + Concat */

static void test_split_concat_roundtrip(void)
{
    for (int iter = 0; iter < 150; iter++) {
        int rank = 1 + rng_int_low(4), axis;
        int64_t dims[4], parts[3], left;
        rnd_shape(rank, dims, 5);
        axis = rng_int_low(rank);
        left = dims[axis];
        for (int i = 0; i < 2; i++) parts[i] = rng_int_low((int)left + 1), left -= parts[i];
        parts[2] = left;
        struct kiln_value *x = iota(rank, dims), *sp = vec64(3, parts);
        struct run r;
        run_init(&r, "Split", 2, 3);
        r.in[0] = x, r.in[1] = sp;
        add_i(&r.at, "axis", axis - (rng_int_low(2) ? rank : 0));
        kiln_status st = run_exec(&r, 13);
        CHECK(st == KILN_OK, "Split: %s", r.err.msg);
        if (st == KILN_OK) {
            struct run c;
            run_init(&c, "Concat", 3, 1);
            for (int i = 0; i < 3; i++) {
                CHECK(r.out[i]->t.dims[axis] == parts[i], "Split part %d", i);
                c.in[i] = r.out[i];
            }
            add_i(&c.at, "axis", axis);
            st = run_exec(&c, 13);
            CHECK(st == KILN_OK, "Concat: %s", c.err.msg);
            if (st == KILN_OK)
                CHECK(same_shape(&c.out[0]->t, rank, dims) &&
                          memcmp(c.out[0]->t.data, x->t.data, kiln_tensor_nbytes(&x->t)) == 0,
                      "Split + Concat is not the identity");
            run_fini(&c);
        }
        run_fini(&r);
        kiln_value_free(x), kiln_value_free(sp);
    }
}

/* ------------------------------------------------------------------ DepthToSpace */

static void test_depth_space(void)
{
    for (int iter = 0; iter < 40; iter++) {
        int64_t b = 1 + rng_int_low(3), dims[4] = {1 + rng_int_low(2), b * b * (1 + rng_int_low(2)),
                                               1 + rng_int_low(3), 1 + rng_int_low(3)};
        bool crd = rng_int_low(2);
        struct kiln_value *x = iota(4, dims);
        struct run r;
        run_init(&r, "DepthToSpace", 1, 1);
        r.in[0] = x;
        add_i(&r.at, "blocksize", b);
        if (crd) add_s(&r.at, "mode", "CRD");
        kiln_status st = run_exec(&r, 13);
        CHECK(st == KILN_OK, "DepthToSpace: %s", r.err.msg);
        if (st != KILN_OK) goto next;
        /* Reference: out[n, c, h*b + i, w*b + j] = in[n, ch, h, w] with
         * ch = DCR: (i*b + j)*C' + c; CRD: c*b*b + i*b + j. */
        int64_t C2 = dims[1] / (b * b), od[4] = {dims[0], C2, dims[2] * b, dims[3] * b}, oc[4];
        CHECK(same_shape(&r.out[0]->t, 4, od), "DepthToSpace shape");
        size_t bad = 0;
        for (size_t i = 0; i < numel(4, od); i++) {
            coords(i, 4, od, oc);
            int64_t bi = oc[2] % b, bj = oc[3] % b;
            int64_t ch = crd ? oc[1] * b * b + bi * b + bj : (bi * b + bj) * C2 + oc[1];
            int64_t ic[4] = {oc[0], ch, oc[2] / b, oc[3] / b};
            if (((int32_t *)r.out[0]->t.data)[i] != (int32_t)linear(4, dims, ic)) bad++;
        }
        CHECK(bad == 0, "DepthToSpace %s: %zu wrong", crd ? "CRD" : "DCR", bad);
        if (!crd) { /* SpaceToDepth undoes DCR DepthToSpace */
            struct run s;
            run_init(&s, "SpaceToDepth", 1, 1);
            s.in[0] = r.out[0];
            add_i(&s.at, "blocksize", b);
            st = run_exec(&s, 13);
            CHECK(st == KILN_OK && same_shape(&s.out[0]->t, 4, dims) &&
                      memcmp(s.out[0]->t.data, x->t.data, kiln_tensor_nbytes(&x->t)) == 0,
                  "SpaceToDepth does not invert DepthToSpace: %s", s.err.msg);
            run_fini(&s);
        }
    next:
        run_fini(&r);
        kiln_value_free(x);
    }
}

/* ------------------------------------------------------------------ Pad */

static void test_pad_modes(void)
{
    static const char *const modes[] = {"constant", "reflect", "edge", "wrap"};
    static const int64_t want[4][7] = {
        {9, 9, 1, 2, 3, 9, 9}, {3, 2, 1, 2, 3, 2, 1}, {1, 1, 1, 2, 3, 3, 3}, {2, 3, 1, 2, 3, 1, 2}};
    int64_t three = 3, vals[3] = {1, 2, 3}, pads[2] = {2, 2}, nine = 9;
    for (int m = 0; m < 4; m++) {
        struct kiln_value *x = ints(KILN_DTYPE_I64, 1, &three, vals), *p = vec64(2, pads),
                          *cv = ints(KILN_DTYPE_I64, 0, NULL, &nine);
        struct run r;
        run_init(&r, "Pad", 3, 1);
        r.in[0] = x, r.in[1] = p, r.in[2] = m == 0 ? cv : NULL;
        add_s(&r.at, "mode", modes[m]);
        kiln_status st = run_exec(&r, 19);
        CHECK(st == KILN_OK && equal_i64(r.out[0], 7, want[m]), "Pad mode %s: %s", modes[m],
              r.err.msg);
        run_fini(&r);
        kiln_value_free(x), kiln_value_free(p), kiln_value_free(cv);
    }
    /* Negative pads crop; 2-D with axes (opset 18). */
    int64_t dims[2] = {3, 4}, np[2] = {-1, 1}, axes[1] = {1};
    struct kiln_value *x = iota(2, dims), *p = vec64(2, np), *a = vec64(1, axes);
    struct run r;
    run_init(&r, "Pad", 4, 1);
    r.in[0] = x, r.in[1] = p, r.in[3] = a;
    kiln_status st = run_exec(&r, 18);
    int32_t want2[12] = {1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0};
    CHECK(st == KILN_OK && same_shape(&r.out[0]->t, 2, dims) &&
              memcmp(r.out[0]->t.data, want2, sizeof want2) == 0,
          "Pad with axes and a negative pad: %s", r.err.msg);
    run_fini(&r);
    kiln_value_free(x), kiln_value_free(p), kiln_value_free(a);
}

/* ------------------------------------------------------------------ Reshape */

static void test_reshape(void)
{
    int64_t dims[3] = {2, 3, 4};
    struct kiln_value *x = iota(3, dims);
    struct {
        int64_t n, shape[4];
        int allowzero;
        bool ok;
        int64_t rank, want[4];
    } cases[] = {
        {2, {0, -1}, 0, true, 2, {2, 12}},   {3, {4, 0, -1}, 0, true, 3, {4, 3, 2}},
        {1, {-1}, 0, true, 1, {24}},         {2, {-1, -1}, 0, false, 0, {0}},
        {2, {5, -1}, 0, false, 0, {0}},      {2, {0, 24}, 1, false, 0, {0}},
        {4, {1, 0, 0, 4}, 0, false, 0, {0}}, {3, {2, -2, 12}, 0, false, 0, {0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kiln_value *s = vec64(cases[i].n, cases[i].shape);
        struct run r;
        run_init(&r, "Reshape", 2, 1);
        r.in[0] = x, r.in[1] = s;
        if (cases[i].allowzero) add_i(&r.at, "allowzero", 1);
        kiln_status st = run_exec(&r, 14);
        if (cases[i].ok)
            CHECK(st == KILN_OK && same_shape(&r.out[0]->t, (int)cases[i].rank, cases[i].want) &&
                      memcmp(r.out[0]->t.data, x->t.data, kiln_tensor_nbytes(&x->t)) == 0,
                  "Reshape case %zu: %s", i, r.err.msg);
        else
            CHECK(st != KILN_OK && r.err.msg[0], "Reshape case %zu should fail", i);
        run_fini(&r);
        kiln_value_free(s);
    }
    kiln_value_free(x);
}

/* ------------------------------------------------------------------ Unique */

static void test_unique(void)
{
    int64_t n = 6, vals[6] = {2, 1, 1, 3, 4, 3};
    for (int sorted = 0; sorted < 2; sorted++) {
        struct kiln_value *x = ints(KILN_DTYPE_F32, 1, &n, vals);
        struct run r;
        run_init(&r, "Unique", 1, 4);
        r.in[0] = x;
        add_i(&r.at, "sorted", sorted);
        kiln_status st = run_exec(&r, 11);
        CHECK(st == KILN_OK, "Unique: %s", r.err.msg);
        if (st == KILN_OK) {
            static const int64_t y[2][4] = {{2, 1, 3, 4}, {1, 2, 3, 4}},
                                 ix[2][4] = {{0, 1, 3, 4}, {1, 0, 3, 4}},
                                 inv[2][6] = {{0, 1, 1, 2, 3, 2}, {1, 0, 0, 2, 3, 2}},
                                 cnt[2][4] = {{1, 2, 2, 1}, {2, 1, 2, 1}};
            CHECK(equal_i64(r.out[0], 4, y[sorted]), "Unique Y (sorted=%d)", sorted);
            CHECK(equal_i64(r.out[1], 4, ix[sorted]), "Unique indices (sorted=%d)", sorted);
            CHECK(equal_i64(r.out[2], 6, inv[sorted]), "Unique inverse (sorted=%d)", sorted);
            CHECK(equal_i64(r.out[3], 4, cnt[sorted]), "Unique counts (sorted=%d)", sorted);
        }
        run_fini(&r);
        kiln_value_free(x);
    }
    /* axis=0 on rows: [[1,0],[0,1],[1,0]] -> sorted unique rows [[0,1],[1,0]] */
    int64_t dims[2] = {3, 2}, m[6] = {1, 0, 0, 1, 1, 0}, want[4] = {0, 1, 1, 0};
    struct kiln_value *x = ints(KILN_DTYPE_I64, 2, dims, m);
    struct run r;
    run_init(&r, "Unique", 1, 1);
    r.in[0] = x;
    add_i(&r.at, "axis", 0);
    kiln_status st = run_exec(&r, 11);
    CHECK(st == KILN_OK && r.out[0]->t.dims[0] == 2 &&
              memcmp(r.out[0]->t.data, want, sizeof want) == 0,
          "Unique axis 0: %s", r.err.msg);
    run_fini(&r);
    kiln_value_free(x);
}

/* ------------------------------------------------------------------ Gather / Scatter */

static void test_gather_scatter(void)
{
    int64_t dims[2] = {3, 2}, two = 2, idx[2] = {-1, 0};
    struct kiln_value *x = iota(2, dims), *ix = vec64(2, idx);
    struct run r;
    run_init(&r, "Gather", 2, 1);
    r.in[0] = x, r.in[1] = ix;
    kiln_status st = run_exec(&r, 13);
    int32_t want[4] = {4, 5, 0, 1};
    CHECK(st == KILN_OK && r.out[0]->t.dims[0] == 2 &&
              memcmp(r.out[0]->t.data, want, sizeof want) == 0,
          "Gather with a negative index: %s", r.err.msg);
    run_fini(&r);
    kiln_value_free(ix);
    /* out of range in every index op: a status naming the index, no read */
    int64_t bad[2] = {0, 3};
    ix = vec64(2, bad);
    run_init(&r, "Gather", 2, 1);
    r.in[0] = x, r.in[1] = ix;
    CHECK(run_exec(&r, 13) == KILN_E_INVALID_ARG && strstr(r.err.msg, "index 3 out of range"),
          "Gather out of range: '%s'", r.err.msg);
    run_fini(&r);
    kiln_value_free(ix);
    int64_t ge[6] = {0, 1, 2, 0, -4, 0};
    ix = ints(KILN_DTYPE_I64, 2, dims, ge);
    run_init(&r, "GatherElements", 2, 1);
    r.in[0] = x, r.in[1] = ix;
    CHECK(run_exec(&r, 13) == KILN_E_INVALID_ARG && strstr(r.err.msg, "-4"),
          "GatherElements out of range: '%s'", r.err.msg);
    run_fini(&r);
    run_init(&r, "ScatterElements", 3, 1);
    r.in[0] = x, r.in[1] = ix, r.in[2] = x;
    CHECK(run_exec(&r, 13) == KILN_E_INVALID_ARG, "ScatterElements out of range: '%s'", r.err.msg);
    run_fini(&r);
    kiln_value_free(ix);
    int64_t nd_dims[2] = {1, 2}, nd[2] = {1, 2};
    ix = ints(KILN_DTYPE_I64, 2, nd_dims, nd);
    run_init(&r, "GatherND", 2, 1);
    r.in[0] = x, r.in[1] = ix;
    CHECK(run_exec(&r, 13) == KILN_E_INVALID_ARG, "GatherND out of range: '%s'", r.err.msg);
    run_fini(&r);
    kiln_value_free(ix);
    kiln_value_free(x);

    /* ScatterND add with duplicates: data [1,2,3,4], indices [[1],[1],[3]], updates [10,20,5] */
    int64_t four = 4, d[4] = {1, 2, 3, 4}, idims[2] = {3, 1}, iv[3] = {1, 1, 3}, three = 3,
            up[3] = {10, 20, 5};
    struct kiln_value *data = vec64(four, d), *ind = ints(KILN_DTYPE_I64, 2, idims, iv),
                      *upd = vec64(three, up);
    static const char *const reds[] = {"add", "mul", "max", "min"};
    static const int64_t rw[4][4] = {{1, 32, 3, 9}, {1, 400, 3, 20}, {1, 20, 3, 5}, {1, 2, 3, 4}};
    for (int i = 0; i < 4; i++) {
        run_init(&r, "ScatterND", 3, 1);
        r.in[0] = data, r.in[1] = ind, r.in[2] = upd;
        add_s(&r.at, "reduction", reds[i]);
        st = run_exec(&r, 18);
        CHECK(st == KILN_OK && equal_i64(r.out[0], 4, rw[i]), "ScatterND reduction %s: %s", reds[i],
              r.err.msg);
        run_fini(&r);
    }
    kiln_value_free(data), kiln_value_free(ind), kiln_value_free(upd);
    (void)two;
}

/* ------------------------------------------------------------------ strings */

static void test_strings(void)
{
    int64_t dims[2] = {2, 2};
    const char *s[4] = {"a", "", "ccc", "dd"};
    struct kiln_value *x = tensor_of(KILN_DTYPE_STRING, 2, dims, s);
    struct run r;
    run_init(&r, "Concat", 2, 1);
    r.in[0] = x, r.in[1] = x;
    add_i(&r.at, "axis", 1);
    kiln_status st = run_exec(&r, 13);
    CHECK(st == KILN_OK, "Concat strings: %s", r.err.msg);
    if (st == KILN_OK) {
        char **o = r.out[0]->t.data, **in = x->t.data;
        static const int src[8] = {0, 1, 0, 1, 2, 3, 2, 3};
        int bad = 0;
        for (int i = 0; i < 8; i++)
            if (strcmp(o[i], s[src[i]]) != 0 || o[i] == in[src[i]]) bad++;
        CHECK(bad == 0, "Concat strings: %d entries wrong or not owned", bad);
        CHECK(r.out[0]->t.flags & KILN_TENSOR_OWNS_STRINGS, "Concat strings not owned");
    }
    run_fini(&r);
    /* Transpose and Pad (constant "" fill) keep working on strings; the sanitizer checks the
     * frees. */
    run_init(&r, "Transpose", 1, 1);
    r.in[0] = x;
    st = run_exec(&r, 13);
    CHECK(st == KILN_OK && strcmp(((char **)r.out[0]->t.data)[1], "ccc") == 0,
          "Transpose strings: %s", r.err.msg);
    run_fini(&r);
    int64_t pads[4] = {0, 1, 0, 0};
    struct kiln_value *p = vec64(4, pads);
    run_init(&r, "Pad", 2, 1);
    r.in[0] = x, r.in[1] = p;
    st = run_exec(&r, 13);
    CHECK(st == KILN_OK && r.out[0]->t.dims[1] == 3 &&
              strcmp(((char **)r.out[0]->t.data)[0], "") == 0 &&
              strcmp(((char **)r.out[0]->t.data)[5], "dd") == 0,
          "Pad strings: %s", r.err.msg);
    run_fini(&r);
    kiln_value_free(p);
    kiln_value_free(x);
}

/* ------------------------------------------------------------------ Resize */

static void test_resize_nearest(void)
{
    int64_t dims[4] = {1, 1, 2, 2}, four = 4;
    struct kiln_value *x = iota(4, dims);
    float sc[4] = {1, 1, 2, 3};
    struct kiln_value *s = new_tensor(KILN_DTYPE_F32, 1, &four);
    memcpy(s->t.data, sc, sizeof sc);
    struct run r;
    run_init(&r, "Resize", 3, 1);
    r.in[0] = x, r.in[2] = s;
    add_s(&r.at, "coordinate_transformation_mode", "asymmetric");
    add_s(&r.at, "nearest_mode", "floor");
    kiln_status st = run_exec(&r, 19);
    int64_t od[4] = {1, 1, 4, 6};
    int32_t want[24] = {0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 2, 2, 2, 3, 3, 3};
    CHECK(st == KILN_OK && same_shape(&r.out[0]->t, 4, od) &&
              memcmp(r.out[0]->t.data, want, sizeof want) == 0,
          "Resize nearest 2x3: %s", r.err.msg);
    run_fini(&r);
    kiln_value_free(x), kiln_value_free(s);
}

/* ------------------------------------------------------------------ Constant sparse_value */

static void test_constant_sparse(void)
{
    for (int variant = 0; variant < 3; variant++) {
        /* dense [2, 3]; nonzeros 7 at (0, 1) and 9 at (1, 2); variant 2 has a bad index */
        struct kiln_sparse_tensor sp = {.rank = 2, .dims = {2, 3}};
        int64_t nnz = 2, cdims[2] = {2, 2};
        if (kiln_tensor_alloc(&sp.values, KILN_DTYPE_F32, 1, &nnz, NULL) ||
            kiln_tensor_alloc(&sp.indices, KILN_DTYPE_I64, variant ? 2 : 1,
                              variant ? cdims : &nnz, NULL)) {
            printf("FAIL: alloc\n");
            exit(1);
        }
        ((float *)sp.values.data)[0] = 7, ((float *)sp.values.data)[1] = 9;
        int64_t *ix = sp.indices.data;
        if (variant == 0) ix[0] = 1, ix[1] = 5;
        else ix[0] = 0, ix[1] = 1, ix[2] = 1, ix[3] = variant == 1 ? 2 : 3;
        struct run r;
        run_init(&r, "Constant", 0, 1);
        r.at.a[r.at.n++] = (struct kiln_attr){
            .name = "sparse_value", .type = KILN_ATTR_SPARSE_TENSOR, .sp = &sp};
        kiln_status st = run_exec(&r, 13);
        if (variant < 2) {
            float want[6] = {0, 7, 0, 0, 0, 9};
            CHECK(st == KILN_OK && same_shape(&r.out[0]->t, 2, sp.dims) &&
                      memcmp(r.out[0]->t.data, want, sizeof want) == 0,
                  "Constant sparse_value (%s indices): %s", variant ? "coordinate" : "linear",
                  r.err.msg);
        } else {
            CHECK(st != KILN_OK && strstr(r.err.msg, "sparse"), "bad sparse index: '%s'",
                  r.err.msg);
        }
        run_fini(&r);
        kiln_tensor_fini(&sp.values);
        kiln_tensor_fini(&sp.indices);
    }
}

int main(void)
{
    rng_seed(0x2545F4914F6CDD1Dull);
    test_transpose_random(300, 6, 4);
    test_transpose_random(60, 4, 40);
    test_transpose_bad_perm();
    test_slice_random();
    test_expand_tile_random();
    test_split_concat_roundtrip();
    test_depth_space();
    test_pad_modes();
    test_reshape();
    test_unique();
    test_gather_scatter();
    test_strings();
    test_resize_nearest();
    test_constant_sparse();
    return test_summary("test_tensor_ops");
}
