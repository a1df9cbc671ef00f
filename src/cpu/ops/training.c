/* src/cpu/ops/training.c: the ai.onnx.preview.training optimizers Adagrad, Adam and Momentum
 * (version 1), following docs/Operators.md and the reference runtime's update rules.
 *
 * Every op reads R (learning rate, float/double scalar) and T (iteration count, int64
 * scalar), then n groups of tensors: Adagrad X[n] G[n] H[n] -> X_new[n] H_new[n]; Momentum
 * X[n] G[n] V[n] -> X_new[n] V_new[n]; Adam X[n] G[n] V[n] H[n] -> X_new[n] V_new[n] H_new[n].
 * The tensors of one group must share X's shape; X, G and the states are float or double.
 * Updates are computed in double per element and stored in each output's input dtype.
 *
 *   Adagrad:  r' = R / (1 + T * decay_factor); g = norm_coefficient * x + g;
 *             h' = h + g^2; x' = x - r' * g / (sqrt(h') + epsilon)
 *   Momentum: g = norm_coefficient * x + g; b = T > 0 ? beta : 1; v' = alpha * v + b * g;
 *             standard: x' = x - R * v';  nesterov: x' = x - R * (g + alpha * v')
 *   Adam:     g = norm_coefficient * x + g; v' = alpha * v + (1 - alpha) * g;
 *             h' = beta * h + (1 - beta) * g^2;
 *             r' = T > 0 ? R * sqrt(1 - beta^T) / (1 - alpha^T) : R;
 *             x' = (1 - norm_coefficient_post) * (x - r' * v' / (sqrt(h') + epsilon))
 *
 * Prepare decodes the attributes into the update's parameters once; Momentum's missing
 * attributes and unknown mode are reported by run, as before.
 */
#include <math.h>
#include <string.h>

#include "cpu/kernel.h"

#define TRAINING_DOMAIN "ai.onnx.preview.training"

enum opt_kind { OPT_ADAGRAD, OPT_MOMENTUM, OPT_ADAM };

struct opt_params {
    double r;
    int64_t t;
    double decay, eps, norm, norm_post, alpha, beta;
    bool nesterov;
};

static bool is_fp(kiln_dtype dt) { return dt == KILN_DTYPE_F32 || dt == KILN_DTYPE_F64; }

/* Reads R and T (inputs 0 and 1): each a one-element tensor. */
static kiln_status read_rt(struct kiln_kctx *k, struct opt_params *p)
{
    const struct kiln_tensor *r, *t;
    KILN_TRY(kiln_in_req(k, 0, &r));
    KILN_TRY(kiln_in_req(k, 1, &t));
    if (!is_fp(r->dtype) || kiln_tensor_numel(r) != 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input R is a %s tensor of %zu elements; expected a float or double "
                          "scalar", kiln_dtype_name(r->dtype), kiln_tensor_numel(r));
    if (t->dtype != KILN_DTYPE_I64 || kiln_tensor_numel(t) != 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input T is a %s tensor of %zu elements; expected an int64 scalar",
                          kiln_dtype_name(t->dtype), kiln_tensor_numel(t));
    p->r = kiln_tensor_get_f64(r, 0);
    p->t = ((const int64_t *)t->data)[0];
    return KILN_OK;
}

/* One element of the update: x, g and the states s[] in, x' and s'[] out. */
static void opt_step(enum opt_kind kind, const struct opt_params *p, double x, double g, const double *s,
                     double *xn, double *sn)
{
    g = p->norm * x + g;
    switch (kind) {
    case OPT_ADAGRAD: {
        double r = p->r / (1 + (double)p->t * p->decay);
        sn[0] = s[0] + g * g;
        *xn = x - r * g / (sqrt(sn[0]) + p->eps);
        break;
    }
    case OPT_MOMENTUM: {
        double b = p->t > 0 ? p->beta : 1.0;
        sn[0] = p->alpha * s[0] + b * g;
        *xn = p->nesterov ? x - p->r * (g + p->alpha * sn[0]) : x - p->r * sn[0];
        break;
    }
    case OPT_ADAM: {
        sn[0] = p->alpha * s[0] + (1 - p->alpha) * g;
        sn[1] = p->beta * s[1] + (1 - p->beta) * g * g;
        double r = p->r;
        if (p->t > 0) r = r * sqrt(1 - pow(p->beta, (double)p->t)) / (1 - pow(p->alpha, (double)p->t));
        *xn = (1 - p->norm_post) * (x - r * sn[0] / (sqrt(sn[1]) + p->eps));
        break;
    }
    }
}

static bool same_shape(const struct kiln_tensor *a, const struct kiln_tensor *b)
{
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return false;
    return true;
}

/* Runs an optimizer with ns state tensors per group (1 or 2). */
static kiln_status opt_run(struct kiln_kctx *k, enum opt_kind kind, size_t ns, const struct opt_params *p0)
{
    static const char *const state_names[2][2] = {{"H", ""}, {"V", "H"}};
    struct opt_params p = *p0;
    KILN_TRY(read_rt(k, &p));
    size_t per = 2 + ns; /* X, G and the states */
    if (k->n_in < 2 + per || (k->n_in - 2) % per)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "%zu inputs; expected 2 + %zu * n (R, T, then X, G and states)",
                          k->n_in, per);
    size_t n = (k->n_in - 2) / per;
    if (k->n_out != (1 + ns) * n)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "%zu outputs; expected %zu for %zu tensor group(s)", k->n_out,
                          (1 + ns) * n, n);
    const char *const *sn = state_names[kind == OPT_ADAM];
    for (size_t g = 0; g < n; g++) {
        const struct kiln_tensor *x, *gr, *st[2] = {NULL, NULL};
        KILN_TRY(kiln_in_req(k, 2 + g, &x));
        KILN_TRY(kiln_in_req(k, 2 + n + g, &gr));
        for (size_t s = 0; s < ns; s++) KILN_TRY(kiln_in_req(k, 2 + (2 + s) * n + g, &st[s]));
        if (!is_fp(x->dtype) || !is_fp(gr->dtype))
            return kiln_kfail(k, KILN_E_INVALID_ARG, "X%zu is %s and G%zu %s; expected float or double", g,
                              kiln_dtype_name(x->dtype), g, kiln_dtype_name(gr->dtype));
        char a[64], b[64];
        if (!same_shape(x, gr))
            return kiln_kfail(k, KILN_E_INVALID_ARG, "G%zu has shape %s; X%zu has %s", g,
                              kiln_shape_str(gr->rank, gr->dims, a, sizeof a), g,
                              kiln_shape_str(x->rank, x->dims, b, sizeof b));
        for (size_t s = 0; s < ns; s++) {
            if (!is_fp(st[s]->dtype))
                return kiln_kfail(k, KILN_E_INVALID_ARG, "%s%zu is %s; expected float or double", sn[s], g,
                                  kiln_dtype_name(st[s]->dtype));
            if (!same_shape(x, st[s]))
                return kiln_kfail(k, KILN_E_INVALID_ARG, "%s%zu has shape %s; X%zu has %s", sn[s], g,
                                  kiln_shape_str(st[s]->rank, st[s]->dims, a, sizeof a), g,
                                  kiln_shape_str(x->rank, x->dims, b, sizeof b));
        }
        struct kiln_tensor *xo = NULL, *so[2] = {NULL, NULL};
        if (kiln_out_wanted(k, g)) KILN_TRY(kiln_out_tensor(k, g, x->dtype, x->rank, x->dims, &xo));
        for (size_t s = 0; s < ns; s++)
            if (kiln_out_wanted(k, (1 + s) * n + g))
                KILN_TRY(kiln_out_tensor(k, (1 + s) * n + g, st[s]->dtype, x->rank, x->dims, &so[s]));
        size_t m = kiln_tensor_numel(x);
        for (size_t i = 0; i < m; i++) {
            double sv[2] = {0, 0}, snew[2] = {0, 0}, xn;
            for (size_t s = 0; s < ns; s++) sv[s] = kiln_tensor_get_f64(st[s], i);
            opt_step(kind, &p, kiln_tensor_get_f64(x, i), kiln_tensor_get_f64(gr, i), sv, &xn, snew);
            if (xo) kiln_tensor_set_f64(xo, i, xn);
            for (size_t s = 0; s < ns; s++)
                if (so[s]) kiln_tensor_set_f64(so[s], i, snew[s]);
        }
    }
    return KILN_OK;
}

/* The attribute part of the parameters (r and t come from the inputs at run), and for
 * Momentum what run reports before anything else. */
struct opt_state {
    struct opt_params p;
    const char *missing; /* Momentum: the first required attribute that is absent */
    const char *mode;    /* Momentum: its mode, when neither standard nor nesterov */
};

static kiln_status opt_state_new(struct kiln_kprep *p, struct opt_state **out)
{
    KILN_TRY(kiln_kprep_alloc(p, sizeof **out, (void **)out));
    p->state = *out;
    return KILN_OK;
}

static kiln_status adagrad_prepare(struct kiln_kprep *p)
{
    struct opt_state *s;
    KILN_TRY(opt_state_new(p, &s));
    s->p.decay = kiln_attr_f(&p->kc, "decay_factor", 0.0f);
    s->p.eps = kiln_attr_f(&p->kc, "epsilon", 1e-6f);
    s->p.norm = kiln_attr_f(&p->kc, "norm_coefficient", 0.0f);
    return KILN_OK;
}

static kiln_status adagrad_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, adagrad_prepare, adagrad_run);
    const struct opt_state *s = k->state;
    return opt_run(k, OPT_ADAGRAD, 1, &s->p);
}

static kiln_status momentum_prepare(struct kiln_kprep *p)
{
    struct opt_state *s;
    KILN_TRY(opt_state_new(p, &s));
    const struct kiln_kctx *k = &p->kc;
    static const char *const req[] = {"alpha", "beta", "mode", "norm_coefficient"};
    for (size_t i = 0; i < 4 && !s->missing; i++)
        if (!kiln_attr_has(k, req[i])) s->missing = req[i];
    s->p.alpha = kiln_attr_f(k, "alpha", 0.0f);
    s->p.beta = kiln_attr_f(k, "beta", 0.0f);
    s->p.norm = kiln_attr_f(k, "norm_coefficient", 0.0f);
    const char *mode = kiln_attr_s(k, "mode", "");
    if (strcmp(mode, "nesterov") == 0) s->p.nesterov = true;
    else if (strcmp(mode, "standard") != 0) s->mode = mode;
    return KILN_OK;
}

static kiln_status momentum_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, momentum_prepare, momentum_run);
    const struct opt_state *s = k->state;
    if (s->missing)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "required attribute '%s' is missing", s->missing);
    if (s->mode)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "mode '%s'; expected 'standard' or 'nesterov'", s->mode);
    return opt_run(k, OPT_MOMENTUM, 1, &s->p);
}

static kiln_status adam_prepare(struct kiln_kprep *p)
{
    struct opt_state *s;
    KILN_TRY(opt_state_new(p, &s));
    const struct kiln_kctx *k = &p->kc;
    s->p.alpha = kiln_attr_f(k, "alpha", 0.9f);
    s->p.beta = kiln_attr_f(k, "beta", 0.999f);
    s->p.eps = kiln_attr_f(k, "epsilon", 1e-6f);
    s->p.norm = kiln_attr_f(k, "norm_coefficient", 0.0f);
    s->p.norm_post = kiln_attr_f(k, "norm_coefficient_post", 0.0f);
    return KILN_OK;
}

static kiln_status adam_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, adam_prepare, adam_run);
    const struct opt_state *s = k->state;
    return opt_run(k, OPT_ADAM, 2, &s->p);
}

const struct kiln_cpu_op kiln_cpu_ops_training[] = {
    {"Adagrad", TRAINING_DOMAIN, 1, 0, adagrad_run, adagrad_prepare, 0},
    {"Adam", TRAINING_DOMAIN, 1, 0, adam_run, adam_prepare, 0},
    {"Momentum", TRAINING_DOMAIN, 1, 0, momentum_run, momentum_prepare, 0},
    {0},
};
