/* src/cpu/ops/random.c: ONNX random generators: RandomUniform (1, 22), RandomNormal (1, 22),
 * RandomUniformLike (1, 22), RandomNormalLike (1, 22), Bernoulli (15, 22) and
 * Multinomial (7, 22).
 *
 * Generator: xoshiro256** (Blackman and Vigna, https://prng.di.unimi.it/), its 256-bit
 * state filled from one 64-bit seed by splitmix64, as its authors recommend. A uniform
 * double in [0, 1) is the top 53 bits times 2^-53; a normal deviate comes from the
 * Box-Muller transform (both values of each pair are used, in order).
 *
 * Seeding: with the `seed` attribute, the stream is a fixed function of the seed's value
 * (the bits of the float widened to double), so a node gives the same output on every run
 * and every machine. Without it, each run draws a fresh seed from a process-wide counter
 * mixed with the clock. The ONNX node tests compare against numpy's generator, which kiln
 * does not reproduce: those cases fail by design; tests/unit/test_random.c checks
 * shapes, types, ranges, determinism and statistics instead.
 *
 * Semantics. Uniform values lie in [low, high) in the output type (a value that rounds up
 * to `high` is moved to the next value below it); low == high gives low everywhere, and
 * low > high is refused. Normal values are mean + scale * N(0, 1). The *Like ops take the
 * shape of their input and its dtype unless `dtype` is given. Bernoulli outputs 1 where a
 * uniform draw u satisfies u < p, so p <= 0 (and NaN) always gives 0 and p >= 1 always 1.
 * Multinomial reads each row of its [batch, classes] input as unnormalized log
 * probabilities: class i has weight exp(x_i - max x); a row whose maximum is +inf spreads
 * over its +inf entries only; a row of all -inf or with NaN is refused. Classes of weight
 * 0 are never drawn.
 *
 * Prepare decodes the attributes once, the seed included (as the bits of its value widened
 * to double); the state is read-only after prepare, and each run seeds its own generator
 * from it (or draws a fresh seed), so runs and threads never share generator state.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "cpu/kernel.h"

/* ------------------------------------------------------------------ generator */

struct rng {
    uint64_t s[4];
    double spare; /* second Box-Muller value */
    bool has_spare;
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
    r->has_spare = false;
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1). */
static inline double rng_unit(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1p-53;
}

/* Standard normal. */
static inline double rng_normal(struct rng *r)
{
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    double u1 = 1.0 - rng_unit(r), u2 = rng_unit(r); /* u1 in (0, 1]: log is finite */
    double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
    r->spare = rad * sin(th);
    r->has_spare = true;
    return rad * cos(th);
}

/* The attributes of the random ops (an op reads its own). */
struct random_state {
    bool has_seed;
    uint64_t seed;          /* the bits of the seed attribute's value widened to double */
    bool has_shape;         /* RandomUniform, RandomNormal */
    const int64_t *shape;
    size_t n_shape;
    bool has_dtype;
    int64_t dtype;          /* with the op's default when absent or not an int */
    double a, b;            /* mean and scale, or low and high */
    int64_t sample_size;    /* Multinomial */
};

/* normal: a, b are mean and scale (else low and high); dtype_default: the op's. */
static kiln_status random_prepare_with(struct kiln_kprep *p, bool normal, int64_t dtype_default)
{
    struct random_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    const struct kiln_kctx *k = &p->kc;
    s->has_seed = kiln_attr_has(k, "seed");
    if (s->has_seed) {
        double v = kiln_attr_f(k, "seed", 0.0f);
        memcpy(&s->seed, &v, sizeof s->seed);
    }
    s->has_shape = kiln_attr_has(k, "shape");
    s->n_shape = kiln_attr_ints(k, "shape", &s->shape);
    s->has_dtype = kiln_attr_has(k, "dtype");
    s->dtype = kiln_attr_i(k, "dtype", dtype_default);
    if (normal) s->a = kiln_attr_f(k, "mean", 0.0f), s->b = kiln_attr_f(k, "scale", 1.0f);
    else s->a = kiln_attr_f(k, "low", 0.0f), s->b = kiln_attr_f(k, "high", 1.0f);
    s->sample_size = kiln_attr_i(k, "sample_size", 1);
    p->state = s;
    return KILN_OK;
}

static kiln_status uniform_prepare(struct kiln_kprep *p)
{
    return random_prepare_with(p, false, KILN_DTYPE_F32);
}
static kiln_status normal_prepare(struct kiln_kprep *p)
{
    return random_prepare_with(p, true, KILN_DTYPE_F32);
}
static kiln_status bernoulli_prepare(struct kiln_kprep *p) { return random_prepare_with(p, false, 0); }
static kiln_status multinomial_prepare(struct kiln_kprep *p)
{
    return random_prepare_with(p, false, KILN_DTYPE_I32);
}

/* Seeds r from the node's `seed` attribute, or from a fresh per-process value. */
static void rng_for_node(const struct kiln_kctx *k, struct rng *r)
{
    static _Atomic uint64_t counter;
    const struct random_state *rs = k->state;
    uint64_t seed;
    if (rs->has_seed) {
        seed = rs->seed;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t c = atomic_fetch_add(&counter, 1);
        seed = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ (c * UINT64_C(0xD1B54A32D192ED03));
    }
    rng_seed(r, seed);
}

/* ------------------------------------------------------------------ RandomUniform / Normal */

static bool float_out(kiln_dtype dt)
{
    return dt == KILN_DTYPE_F32 || dt == KILN_DTYPE_F64 || dt == KILN_DTYPE_F16 || dt == KILN_DTYPE_BF16;
}

/* The next 16-bit float (f16 or bf16: both sign-magnitude) below h, toward -inf. */
static uint16_t half_below(uint16_t h)
{
    if (h == 0) return 0x8001;
    return (h & 0x8000) ? (uint16_t)(h + 1) : (uint16_t)(h - 1);
}

/* Fills t (f16/bf16/f32/f64) with uniform values in [lo, hi) (normal == false) or with
 * lo + hi * N(0, 1) (normal == true: lo is the mean, hi the scale). */
static void fill(struct kiln_tensor *t, struct rng *r, bool normal, double lo, double hi)
{
    size_t n = kiln_tensor_numel(t);
    double span = hi - lo;
    bool clamp = !normal && hi > lo;
    switch (t->dtype) {
    case KILN_DTYPE_F64: {
        double *y = t->data;
        for (size_t i = 0; i < n; i++) {
            double v = normal ? lo + hi * rng_normal(r) : lo + span * rng_unit(r);
            y[i] = clamp && v >= hi ? nextafter(hi, -INFINITY) : v;
        }
        break;
    }
    case KILN_DTYPE_F32: {
        float *y = t->data, hf = (float)hi;
        for (size_t i = 0; i < n; i++) {
            float v = (float)(normal ? lo + hi * rng_normal(r) : lo + span * rng_unit(r));
            y[i] = clamp && v >= hf ? nextafterf(hf, -INFINITY) : v;
        }
        break;
    }
    default: { /* F16, BF16 */
        bool bf = t->dtype == KILN_DTYPE_BF16;
        uint16_t *y = t->data;
        for (size_t i = 0; i < n; i++) {
            float v = (float)(normal ? lo + hi * rng_normal(r) : lo + span * rng_unit(r));
            uint16_t h = bf ? kiln_f32_to_bf16(v) : kiln_f32_to_f16(v);
            if (clamp) {
                float back = bf ? kiln_bf16_to_f32(h) : kiln_f16_to_f32(h);
                if ((double)back >= hi) h = half_below(h);
            }
            y[i] = h;
        }
    }
    }
}

/* RandomUniform, RandomNormal (like == false: shape from the attribute, dtype default
 * float) and their *Like forms (shape and default dtype from input 0). */
static kiln_status random_run(struct kiln_kctx *k, bool normal, bool like)
{
    const struct random_state *rs = k->state;
    int rank;
    const int64_t *dims;
    int64_t adims[KILN_MAX_RANK];
    kiln_dtype dt = KILN_DTYPE_F32;
    if (like) {
        const struct kiln_tensor *x;
        KILN_TRY(kiln_in_req(k, 0, &x));
        rank = x->rank, dims = x->dims, dt = x->dtype;
    } else {
        const int64_t *shape = rs->shape;
        size_t ns = rs->n_shape;
        if (!rs->has_shape)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'shape' is required");
        if (ns > KILN_MAX_RANK)
            return kiln_kfail(k, KILN_E_LIMIT, "attribute 'shape' has %zu dims; the limit is %d", ns, KILN_MAX_RANK);
        for (size_t i = 0; i < ns; i++) {
            if (shape[i] < 0)
                return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'shape' has dim %zu = %lld; expected >= 0",
                                  i, (long long)shape[i]);
            adims[i] = shape[i];
        }
        rank = (int)ns, dims = adims;
    }
    if (rs->has_dtype) dt = (kiln_dtype)rs->dtype;
    if (!float_out(dt))
        return kiln_kfail(k, like && !rs->has_dtype ? KILN_E_INVALID_ARG : KILN_E_INVALID_MODEL,
                          "output dtype is %s%s; expected float16, bfloat16, float or double",
                          kiln_dtype_valid((int)dt) ? kiln_dtype_name(dt) : "an unknown type",
                          like && !rs->has_dtype ? " (taken from input 0)" : "");
    double a = rs->a, b = rs->b;
    if (!normal) {
        if (!(a <= b))
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "low = %g and high = %g; expected low <= high", a, b);
    }
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, dt, rank, dims, &y));
    struct rng r;
    rng_for_node(k, &r);
    fill(y, &r, normal, a, b);
    return KILN_OK;
}

static kiln_status random_uniform_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, uniform_prepare, random_uniform_run);
    return random_run(k, false, false);
}
static kiln_status random_normal_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, normal_prepare, random_normal_run);
    return random_run(k, true, false);
}
static kiln_status random_uniform_like_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, uniform_prepare, random_uniform_like_run);
    return random_run(k, false, true);
}
static kiln_status random_normal_like_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, normal_prepare, random_normal_like_run);
    return random_run(k, true, true);
}

/* ------------------------------------------------------------------ Bernoulli */

static bool bernoulli_out(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DTYPE_F16: case KILN_DTYPE_BF16: case KILN_DTYPE_F32: case KILN_DTYPE_F64:
    case KILN_DTYPE_I8: case KILN_DTYPE_I16: case KILN_DTYPE_I32: case KILN_DTYPE_I64:
    case KILN_DTYPE_U8: case KILN_DTYPE_U16: case KILN_DTYPE_U32: case KILN_DTYPE_U64:
    case KILN_DTYPE_BOOL:
        return true;
    default:
        return false;
    }
}

static kiln_status bernoulli_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, bernoulli_prepare, bernoulli_run);
    const struct random_state *rs = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!float_out(x->dtype))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input' is %s; expected float16, bfloat16, float or double",
                          kiln_dtype_name(x->dtype));
    kiln_dtype dt = rs->has_dtype ? (kiln_dtype)rs->dtype : x->dtype;
    if (!bernoulli_out(dt))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'dtype' is %lld; expected a float, integer or bool type",
                          (long long)dt);
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, dt, x->rank, x->dims, &y));
    struct rng r;
    rng_for_node(k, &r);
    size_t n = kiln_tensor_numel(x);
    /* The output is zero-filled: only ones are written. */
    for (size_t i = 0; i < n; i++) {
        double p = x->dtype == KILN_DTYPE_F32 ? ((const float *)x->data)[i] : kiln_tensor_get_f64(x, i);
        if (rng_unit(&r) < p) kiln_tensor_set_f64(y, i, 1.0);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ Multinomial */

static kiln_status multinomial_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, multinomial_prepare, multinomial_run);
    const struct random_state *rs = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!float_out(x->dtype))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input' is %s; expected float16, bfloat16, float or double",
                          kiln_dtype_name(x->dtype));
    if (x->rank != 2)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input' has rank %d; expected 2 [batch_size, class_size]",
                          x->rank);
    int64_t dti = rs->dtype;
    if (dti != KILN_DTYPE_I32 && dti != KILN_DTYPE_I64)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'dtype' is %lld; expected 6 (int32) or 7 (int64)",
                          (long long)dti);
    int64_t ns = rs->sample_size;
    if (ns < 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'sample_size' is %lld; expected >= 0", (long long)ns);
    int64_t batch = x->dims[0], classes = x->dims[1];
    if (classes == 0 && batch > 0 && ns > 0)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input' has 0 classes; nothing to sample from");
    int64_t od[2] = {batch, ns};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, (kiln_dtype)dti, 2, od, &y));
    if (batch == 0 || ns == 0) return KILN_OK;
    double *cdf;
    size_t bytes;
    if (!kiln_mul_size((size_t)classes, sizeof *cdf, &bytes))
        return kiln_kfail(k, KILN_E_LIMIT, "class_size %lld is too large", (long long)classes);
    KILN_TRY(kiln_scratch(k, bytes, (void **)&cdf));
    struct rng r;
    rng_for_node(k, &r);
    for (int64_t b = 0; b < batch; b++) {
        size_t row = (size_t)b * (size_t)classes;
        double mx = -INFINITY;
        for (int64_t c = 0; c < classes; c++) {
            double v = kiln_tensor_get_f64(x, row + (size_t)c);
            if (isnan(v))
                return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input' row %lld has NaN at class %lld",
                                  (long long)b, (long long)c);
            if (v > mx) mx = v;
        }
        if (mx == -INFINITY)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input' row %lld is all -inf (no class has "
                              "positive probability)", (long long)b);
        double total = 0;
        int64_t last = 0; /* last class of positive weight: the answer if rounding overshoots */
        for (int64_t c = 0; c < classes; c++) {
            double v = kiln_tensor_get_f64(x, row + (size_t)c);
            double w = isinf(mx) ? (v == mx ? 1.0 : 0.0) : exp(v - mx);
            if (w > 0) last = c;
            total += w;
            cdf[c] = total;
        }
        for (int64_t s = 0; s < ns; s++) {
            double u = rng_unit(&r) * total;
            int64_t lo = 0, hi = classes; /* first c with cdf[c] > u */
            while (lo < hi) {
                int64_t mid = lo + (hi - lo) / 2;
                if (cdf[mid] > u) hi = mid;
                else lo = mid + 1;
            }
            int64_t pick = lo < classes ? lo : last;
            size_t o = (size_t)b * (size_t)ns + (size_t)s;
            if (dti == KILN_DTYPE_I32) ((int32_t *)y->data)[o] = (int32_t)pick;
            else ((int64_t *)y->data)[o] = pick;
        }
    }
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_random[] = {
    {"RandomUniform", "", 1, 0, random_uniform_run, uniform_prepare, 0},
    {"RandomNormal", "", 1, 0, random_normal_run, normal_prepare, 0},
    {"RandomUniformLike", "", 1, 0, random_uniform_like_run, uniform_prepare, 0},
    {"RandomNormalLike", "", 1, 0, random_normal_like_run, normal_prepare, 0},
    {"Bernoulli", "", 15, 0, bernoulli_run, bernoulli_prepare, 0},
    {"Multinomial", "", 7, 0, multinomial_run, multinomial_prepare, 0},
    {0},
};
