/* src/cpu/ops/text.c: ONNX string ops: StringNormalizer (10), StringConcat (20),
 * StringSplit (20), RegexFullMatch (20), and TfIdfVectorizer (9).
 *
 * Case changes and case-insensitive comparison act on ASCII letters only (the spec leaves
 * locale handling to the implementation; kiln does not depend on the C locale).
 * RegexFullMatch uses glibc's POSIX extended regular expressions (with its \w \s \b
 * extensions) anchored at both ends; RE2 escapes glibc lacks (\d, escapes inside [...]) are
 * translated, and non-greedy operators are refused with a message.
 *
 * Prepare decodes the attributes once and does the work that depends on them alone:
 * StringNormalizer sorts its stopwords for binary search, RegexFullMatch translates its
 * pattern to POSIX ERE (compiling stays in run: a regex_t owns heap memory and prepared
 * state has no destructor), and TfIdfVectorizer builds a hash table of the pool's n-grams
 * that maps each to the output column it counts into, so run looks every window of the
 * input up once instead of comparing it with every n-gram of the pool. Problems with the
 * attributes are reported by run, at the point and with the message they had before.
 */
#include <ctype.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/broadcast.h"
#include "cpu/kernel.h"

/* Sets string element i of t to a copy of s[0..n). */
static kiln_status set_str(struct kiln_kctx *k, struct kiln_tensor *t, size_t i, const char *s, size_t n)
{
    char *c = kiln_malloc(n + 1);
    if (!c) return kiln_kfail(k, KILN_E_NOMEM, "out of memory for a string of %zu bytes", n);
    memcpy(c, s, n);
    c[n] = 0;
    ((char **)t->data)[i] = c;
    return KILN_OK;
}

static const char *str_at(const struct kiln_tensor *t, size_t i)
{
    const char *s = ((char *const *)t->data)[i];
    return s ? s : "";
}

static kiln_status want_string(struct kiln_kctx *k, const struct kiln_tensor *t, const char *name)
{
    if (t->dtype != KILN_DTYPE_STRING)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input '%s' is %s; expected string", name,
                          kiln_dtype_name(t->dtype));
    return KILN_OK;
}

/* ASCII case-insensitive strcmp: 0 exactly when the strings are equal ignoring case. */
static int icmp(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        int d = tolower((unsigned char)*a) - tolower((unsigned char)*b);
        if (d) return d;
    }
    return (unsigned char)*a - (unsigned char)*b;
}

/* ------------------------------------------------------------------ StringNormalizer */

struct strnorm_state {
    const char *action; /* case_change_action, for the message when it is not valid */
    int mode;           /* 0 NONE, 1 LOWER, 2 UPPER, -1 none of them */
    bool sensitive;
    const char **stop;  /* the stopwords, sorted by strcmp (sensitive) or icmp */
    size_t n_stop;
};

static int stop_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}
static int stop_icmp(const void *a, const void *b)
{
    return icmp(*(const char *const *)a, *(const char *const *)b);
}

static kiln_status strnorm_prepare(struct kiln_kprep *p)
{
    struct strnorm_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    const struct kiln_kctx *k = &p->kc;
    s->action = kiln_attr_s(k, "case_change_action", "NONE");
    s->mode = strcmp(s->action, "LOWER") == 0 ? 1 : strcmp(s->action, "UPPER") == 0 ? 2 : 0;
    if (!s->mode && strcmp(s->action, "NONE") != 0) s->mode = -1;
    s->sensitive = kiln_attr_i(k, "is_case_sensitive", 0) != 0;
    const char *const *stop = NULL;
    s->n_stop = kiln_attr_strings(k, "stopwords", &stop);
    size_t bytes;
    if (!kiln_mul_size(s->n_stop, sizeof *s->stop, &bytes))
        return kiln_kfail(&p->kc, KILN_E_LIMIT, "%zu stopwords are too many", s->n_stop);
    KILN_TRY(kiln_kprep_alloc(p, bytes, (void **)&s->stop));
    for (size_t i = 0; i < s->n_stop; i++) s->stop[i] = stop[i] ? stop[i] : "";
    if (s->n_stop) qsort(s->stop, s->n_stop, sizeof *s->stop, s->sensitive ? stop_cmp : stop_icmp);
    p->state = s;
    return KILN_OK;
}

static kiln_status strnorm_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, strnorm_prepare, strnorm_run);
    const struct strnorm_state *ss = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(want_string(k, x, "X"));
    bool sensitive = ss->sensitive;
    int mode = ss->mode;
    if (mode < 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "case_change_action '%s'; expected LOWER, UPPER or NONE",
                          ss->action);
    bool two_d = x->rank == 2;
    if (!(x->rank == 1 || (two_d && x->dims[0] == 1)))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X must be [C] or [1, C]; got rank %d", x->rank);
    size_t n = kiln_tensor_numel(x), kept = 0;
    bool *keep;
    KILN_TRY(kiln_scratch(k, n + 1, (void **)&keep));
    for (size_t i = 0; i < n; i++) {
        const char *xi = str_at(x, i);
        keep[i] = !ss->n_stop ||
                  !bsearch(&xi, ss->stop, ss->n_stop, sizeof *ss->stop, sensitive ? stop_cmp : stop_icmp);
        kept += keep[i];
    }
    /* All removed: the output holds one empty string. */
    int64_t dims[2] = {1, (int64_t)(kept ? kept : 1)};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_STRING, two_d ? 2 : 1, two_d ? dims : dims + 1, &y));
    for (size_t i = 0, o = 0; i < n; i++) {
        if (!keep[i]) continue;
        const char *s = str_at(x, i);
        size_t len = strlen(s);
        KILN_TRY(set_str(k, y, o, s, len));
        char *d = ((char **)y->data)[o++];
        for (size_t c = 0; c < len && mode; c++)
            d[c] = (char)(mode == 1 ? tolower((unsigned char)d[c]) : toupper((unsigned char)d[c]));
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ StringConcat */

static kiln_status strconcat_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *a, *b;
    KILN_TRY(kiln_in_req(k, 0, &a));
    KILN_TRY(kiln_in_req(k, 1, &b));
    KILN_TRY(want_string(k, a, "X"));
    KILN_TRY(want_string(k, b, "Y"));
    int ranks[2] = {a->rank, b->rank}, rank;
    const int64_t *dims[2] = {a->dims, b->dims};
    int64_t od[KILN_MAX_RANK];
    kiln_err e;
    if (kiln_bcast_shape(2, ranks, dims, &rank, od, &e)) return kiln_kfail(k, e.status, "%s", e.msg);
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_STRING, rank, od, &y));
    struct kiln_bcast_iter it;
    kiln_bcast_iter_init(&it, 2, ranks, dims, rank, od);
    for (size_t r = 0; r < it.rows; r++, kiln_bcast_iter_next(&it))
        for (size_t i = 0; i < it.inner; i++) {
            const char *s = str_at(a, it.off[0] + i * it.step[0]);
            const char *t = str_at(b, it.off[1] + i * it.step[1]);
            size_t ls = strlen(s), lt = strlen(t);
            char *c = kiln_malloc(ls + lt + 1);
            if (!c) return kiln_kfail(k, KILN_E_NOMEM, "out of memory concatenating strings");
            memcpy(c, s, ls);
            memcpy(c + ls, t, lt + 1);
            ((char **)y->data)[it.out_off + i] = c;
        }
    return KILN_OK;
}

/* ------------------------------------------------------------------ StringSplit */

/* Splits s into at most maxsplit+1 parts (maxsplit < 0: unlimited), like Python's
 * str.split(delim) / str.split() when delim is empty. Calls emit for each part (may be
 * NULL to count). Returns the part count. */
static size_t split_str(const char *s, const char *delim, int64_t maxsplit,
                        kiln_status (*emit)(void *, const char *, size_t), void *ctx, kiln_status *st)
{
    size_t parts = 0, dl = strlen(delim);
    *st = KILN_OK;
    if (dl == 0) {
        const char *p = s;
        for (;;) {
            while (*p && isspace((unsigned char)*p)) p++;
            if (!*p) break;
            const char *q = p;
            if (maxsplit >= 0 && (int64_t)parts == maxsplit) {
                /* the rest, with trailing whitespace stripped */
                q = p + strlen(p);
                while (q > p && isspace((unsigned char)q[-1])) q--;
            } else {
                while (*q && !isspace((unsigned char)*q)) q++;
            }
            if (emit && (*st = emit(ctx, p, (size_t)(q - p)))) return parts;
            parts++;
            p = q;
            if (maxsplit >= 0 && (int64_t)parts > maxsplit) break;
        }
        return parts;
    }
    const char *p = s;
    for (;;) {
        const char *q = (maxsplit < 0 || (int64_t)parts < maxsplit) ? strstr(p, delim) : NULL;
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (emit && (*st = emit(ctx, p, len))) return parts;
        parts++;
        if (!q) break;
        p = q + dl;
    }
    return parts;
}

struct split_emit {
    struct kiln_kctx *k;
    struct kiln_tensor *y;
    size_t base;
    size_t i;
};

static kiln_status split_emit_fn(void *ctx, const char *s, size_t n)
{
    struct split_emit *se = ctx;
    return set_str(se->k, se->y, se->base + se->i++, s, n);
}

struct strsplit_state {
    const char *delimiter;
    int64_t maxsplit;
};

static kiln_status strsplit_prepare(struct kiln_kprep *p)
{
    struct strsplit_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    s->delimiter = kiln_attr_s(&p->kc, "delimiter", "");
    s->maxsplit = kiln_attr_i(&p->kc, "maxsplit", -1);
    p->state = s;
    return KILN_OK;
}

static kiln_status strsplit_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, strsplit_prepare, strsplit_run);
    const struct strsplit_state *ss = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(want_string(k, x, "X"));
    const char *delim = ss->delimiter;
    int64_t maxsplit = ss->maxsplit;
    if (x->rank + 1 > KILN_MAX_RANK) return kiln_kfail(k, KILN_E_LIMIT, "input rank %d too large", x->rank);
    size_t n = kiln_tensor_numel(x), most = 0;
    kiln_status st;
    for (size_t i = 0; i < n; i++) {
        size_t c = split_str(str_at(x, i), delim, maxsplit, NULL, NULL, &st);
        if (c > most) most = c;
    }
    int64_t dims[KILN_MAX_RANK];
    memcpy(dims, x->dims, sizeof(int64_t) * (size_t)x->rank);
    dims[x->rank] = (int64_t)most;
    struct kiln_tensor *y, *z;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_STRING, x->rank + 1, dims, &y));
    KILN_TRY(kiln_out_tensor(k, 1, KILN_DTYPE_I64, x->rank, x->dims, &z));
    for (size_t i = 0; i < n; i++) {
        struct split_emit se = {k, y, i * most, 0};
        size_t c = split_str(str_at(x, i), delim, maxsplit, split_emit_fn, &se, &st);
        if (st) return st;
        ((int64_t *)z->data)[i] = (int64_t)c;
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ RegexFullMatch */

/* Translates the RE2 shorthands kiln supports into POSIX ERE, anchored. */
static kiln_status re2_to_ere(struct kiln_kctx *k, const char *re, char *out, size_t size)
{
    size_t o = 0;
    const char *add;
#define PUT(str)                                                                               \
    do {                                                                                       \
        add = (str);                                                                           \
        size_t l_ = strlen(add);                                                               \
        if (o + l_ + 3 >= size) return kiln_kfail(k, KILN_E_LIMIT, "pattern too long");      \
        memcpy(out + o, add, l_);                                                              \
        o += l_;                                                                               \
    } while (0)
    PUT("^(");
    for (const char *p = re; *p; p++) {
        char one[3] = {*p, 0, 0};
        if (*p == '[') {
            /* Bracket expression: POSIX treats '\' literally inside, so expand RE2 escapes
             * here; an escaped '-' moves to the end, where it is literal. */
            bool dash = false;
            PUT("[");
            p++;
            if (*p == '^') {
                PUT("^");
                p++;
            }
            if (*p == ']') {
                PUT("]");
                p++;
            }
            for (; *p && *p != ']'; p++) {
                one[0] = *p;
                one[1] = 0;
                if (*p == '\\' && p[1]) {
                    p++;
                    switch (*p) {
                    case 'd': PUT("0-9"); continue;
                    case 'w': PUT("A-Za-z0-9_"); continue;
                    case 's': PUT("[:space:]"); continue;
                    case '-': dash = true; continue;
                    case 'D': case 'W': case 'S':
                        return kiln_kfail(k, KILN_E_UNSUPPORTED, "pattern '%s': \\%c inside [] is not supported", re, *p);
                    default: one[0] = *p; PUT(one); continue;
                    }
                }
                PUT(one);
            }
            if (!*p) return kiln_kfail(k, KILN_E_INVALID_MODEL, "pattern '%s': unterminated [", re);
            if (dash) PUT("-");
            PUT("]");
            continue;
        }
        if (*p == '\\' && p[1]) {
            p++;
            switch (*p) {
            case 'd': PUT("[0-9]"); continue;
            case 'D': PUT("[^0-9]"); continue;
            default: one[0] = '\\'; one[1] = *p; PUT(one); continue; /* \w \s \b: GNU regex */
            }
        }
        if ((*p == '?' || *p == '+' || *p == '*') && p[1] == '?')
            return kiln_kfail(k, KILN_E_UNSUPPORTED, "pattern '%s': non-greedy operators are not supported", re);
        PUT(one);
    }
    PUT(")$");
#undef PUT
    out[o] = 0;
    return KILN_OK;
}

struct regex_state {
    const char *pattern;  /* NULL: attribute 'pattern' is missing */
    const char *ere;      /* the pattern translated to anchored POSIX ERE */
    kiln_status ere_st;   /* the translation's failure, reported by run */
    const char *ere_msg;
};

static kiln_status regex_prepare(struct kiln_kprep *p)
{
    struct regex_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    p->state = s;
    s->pattern = kiln_attr_s(&p->kc, "pattern", NULL);
    if (!s->pattern) return KILN_OK;
    char ere[2048];
    kiln_err e = {0};
    struct kiln_kctx kc = p->kc;
    kc.err = &e;
    s->ere_st = re2_to_ere(&kc, s->pattern, ere, sizeof ere);
    KILN_TRY(kiln_cpu_prep_keep(p, s->ere_st, &e, &s->ere_msg));
    if (s->ere_st) return KILN_OK;
    size_t n = strlen(ere);
    char *copy;
    KILN_TRY(kiln_kprep_alloc(p, n + 1, (void **)&copy));
    memcpy(copy, ere, n + 1);
    s->ere = copy;
    return KILN_OK;
}

static kiln_status regex_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, regex_prepare, regex_run);
    const struct regex_state *rs = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(want_string(k, x, "X"));
    const char *pattern = rs->pattern;
    if (!pattern) return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'pattern' is missing");
    if (rs->ere_st) return kiln_err_set(k->err, rs->ere_st, "%s", rs->ere_msg);
    const char *ere = rs->ere;
    regex_t rx;
    int rc = regcomp(&rx, ere, REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char msg[200];
        regerror(rc, &rx, msg, sizeof msg);
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "pattern '%s' does not compile: %s", pattern, msg);
    }
    struct kiln_tensor *y;
    kiln_status st = kiln_out_tensor(k, 0, KILN_DTYPE_BOOL, x->rank, x->dims, &y);
    for (size_t i = 0; !st && i < kiln_tensor_numel(x); i++)
        ((uint8_t *)y->data)[i] = regexec(&rx, str_at(x, i), 0, NULL, 0) == 0;
    regfree(&rx);
    return st;
}

/* ------------------------------------------------------------------ TfIdfVectorizer */

/* One n-gram of the pool in the hash table: its n tokens start at pool index `at`; it
 * counts into output column `col` (-1: none, its ordinal is past ngram_indexes). Only the
 * first of equal n-grams of one length is kept: the count goes to the first match in pool
 * order. */
struct tf_slot {
    uint64_t hash;
    size_t at;
    int64_t col;
    int64_t n; /* 0: empty slot */
};

struct tfidf_state {
    int64_t min_n, max_n, max_skip;
    const int64_t *counts, *indexes, *pool_i;
    const char *const *pool_s;
    const float *weights;
    size_t n_counts, n_indexes, n_pool, n_weights;
    bool strings;     /* the pool holds strings (pool_int64s is empty) */
    bool bad_grams;   /* gram lengths invalid for ngram_counts: run fails */
    const char *mode; /* for the message when tf_mode < 0 */
    int tf_mode;      /* 0 TF, 1 IDF, 2 TFIDF, -1 none of them */
    bool bad_counts;  /* ngram_counts out of range for some n in [min_n, max_n] */
    int64_t out_len;
    struct tf_slot *slots; /* the n-grams of lengths [min_n, max_n]; NULL when run fails */
    size_t mask;           /* slots has mask + 1 entries, a power of two */
};

static uint64_t tf_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    return h ^ (h >> 33);
}

static uint64_t tf_hash_str(const char *s)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
    return tf_mix(h);
}

static uint64_t tf_hash_int(int64_t v) { return tf_mix((uint64_t)v); }

/* The hash of an n-gram from its tokens' hashes th[0], th[step], ..., th[(n-1)*step]. */
static uint64_t tf_hash_gram(const uint64_t *th, size_t step, int64_t n)
{
    uint64_t h = tf_mix((uint64_t)n);
    for (int64_t t = 0; t < n; t++) h = tf_mix(h ^ th[(size_t)t * step]) + (uint64_t)t;
    return h;
}

static const char *pool_str(const struct tfidf_state *s, size_t i)
{
    return s->pool_s[i] ? s->pool_s[i] : "";
}

/* Whether pool n-grams at a and b (n tokens each) are equal. */
static bool tf_pool_eq(const struct tfidf_state *s, size_t a, size_t b, int64_t n)
{
    for (int64_t t = 0; t < n; t++) {
        size_t i = a + (size_t)t, j = b + (size_t)t;
        if (s->strings ? strcmp(pool_str(s, i), pool_str(s, j)) != 0 : s->pool_i[i] != s->pool_i[j])
            return false;
    }
    return true;
}

/* The ordinal of the first n-gram of length n in the pool: the counts of the shorter ones
 * (computed as run always did, wrapping on unchecked lengths below min_gram_length). */
static size_t tf_ord_base(const struct tfidf_state *s, int64_t n)
{
    size_t ord = 0;
    for (int64_t m = 1; m < n; m++) {
        size_t ms = (size_t)s->counts[m - 1], me = (size_t)s->counts[m];
        ord += (me - ms) / (size_t)m;
    }
    return ord;
}

/* The pool range [*start, *end) of the n-grams of length n (valid unless bad_counts). */
static void tf_range(const struct tfidf_state *s, int64_t n, size_t *start, size_t *end)
{
    *start = (size_t)s->counts[n - 1];
    *end = (size_t)n < s->n_counts ? (size_t)s->counts[n] : s->n_pool;
}

/* Puts every n-gram of lengths [min_n, max_n] of the pool into the hash table. */
static kiln_status tf_build(struct kiln_kprep *p, struct tfidf_state *s)
{
    size_t total = 0, start, end;
    for (int64_t n = s->min_n; n <= s->max_n; n++) {
        tf_range(s, n, &start, &end);
        total += (end - start) / (size_t)n; /* ranges are disjoint within the pool */
    }
    size_t cap = 8;
    while (cap < 2 * total + 1) cap *= 2; /* total <= n_pool: no overflow */
    KILN_TRY(kiln_kprep_alloc(p, cap * sizeof *s->slots, (void **)&s->slots));
    s->mask = cap - 1;
    uint64_t th[64], *ths = th;
    if (s->max_n > 64) { /* token hashes of one n-gram */
        KILN_TRY(kiln_kprep_alloc(p, (size_t)s->max_n * sizeof *ths, (void **)&ths));
    }
    for (int64_t n = s->min_n; n <= s->max_n; n++) {
        tf_range(s, n, &start, &end);
        size_t ord = tf_ord_base(s, n), n_grams = (end - start) / (size_t)n;
        for (size_t g = 0; g < n_grams; g++, ord++) {
            size_t at = start + g * (size_t)n;
            for (int64_t t = 0; t < n; t++)
                ths[t] = s->strings ? tf_hash_str(pool_str(s, at + (size_t)t))
                                    : tf_hash_int(s->pool_i[at + (size_t)t]);
            uint64_t h = tf_hash_gram(ths, 1, n);
            size_t i = (size_t)h & s->mask;
            bool dup = false;
            for (; s->slots[i].n; i = (i + 1) & s->mask)
                if (s->slots[i].n == n && s->slots[i].hash == h && tf_pool_eq(s, s->slots[i].at, at, n)) {
                    dup = true;
                    break;
                }
            if (dup) continue;
            /* ngram_indexes is indexed by the n-gram's ordinal in the pool; a negative
             * index (which shape inference reports) counts nowhere. */
            int64_t col = ord < s->n_indexes && s->indexes[ord] >= 0 ? s->indexes[ord] : -1;
            s->slots[i] = (struct tf_slot){.hash = h, .at = at, .col = col, .n = n};
        }
    }
    return KILN_OK;
}

static kiln_status tfidf_prepare(struct kiln_kprep *p)
{
    struct tfidf_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    p->state = s;
    const struct kiln_kctx *k = &p->kc;
    s->min_n = kiln_attr_i(k, "min_gram_length", 0);
    s->max_n = kiln_attr_i(k, "max_gram_length", 0);
    s->max_skip = kiln_attr_i(k, "max_skip_count", 0);
    s->mode = kiln_attr_s(k, "mode", "TF");
    s->n_counts = kiln_attr_ints(k, "ngram_counts", &s->counts);
    s->n_indexes = kiln_attr_ints(k, "ngram_indexes", &s->indexes);
    s->n_pool = kiln_attr_ints(k, "pool_int64s", &s->pool_i);
    s->strings = s->n_pool == 0;
    if (s->strings) s->n_pool = kiln_attr_strings(k, "pool_strings", &s->pool_s);
    s->n_weights = kiln_attr_floats(k, "weights", &s->weights);
    s->bad_grams = s->min_n < 1 || s->max_n < s->min_n || (size_t)s->max_n > s->n_counts || s->max_skip < 0;
    const char *mode = s->mode;
    s->tf_mode = strcmp(mode, "TF") == 0      ? 0
                 : strcmp(mode, "IDF") == 0   ? 1
                 : strcmp(mode, "TFIDF") == 0 ? 2
                                              : -1;
    for (size_t i = 0; i < s->n_indexes; i++)
        if (s->indexes[i] + 1 > s->out_len) s->out_len = s->indexes[i] + 1;
    if (s->bad_grams) return KILN_OK;
    for (int64_t n = s->min_n; n <= s->max_n; n++) {
        size_t start, end;
        tf_range(s, n, &start, &end);
        if (end > s->n_pool || start > end) s->bad_counts = true;
    }
    if (s->bad_counts || s->tf_mode < 0) return KILN_OK;
    return tf_build(p, s);
}

/* Counts, for each row, the n-grams of the pool that occur in it (with up to max_skip
 * tokens skipped between consecutive ones), each occurrence once for the first equal
 * n-gram of its length in the pool; then applies the weights as mode says. */
static kiln_status tfidf_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, tfidf_prepare, tfidf_run);
    const struct tfidf_state *ts = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (x->dtype != KILN_DTYPE_STRING && x->dtype != KILN_DTYPE_I32 && x->dtype != KILN_DTYPE_I64)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X is %s; expected string, int32 or int64",
                          kiln_dtype_name(x->dtype));
    const int64_t min_n = ts->min_n, max_n = ts->max_n, max_skip = ts->max_skip;
    const bool strings = ts->strings;
    if (ts->bad_grams)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "gram lengths [%lld, %lld] invalid for %zu ngram_counts",
                          (long long)min_n, (long long)max_n, ts->n_counts);
    if (strings != (x->dtype == KILN_DTYPE_STRING))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input is %s but the pool holds %s", kiln_dtype_name(x->dtype),
                          strings ? "strings" : "int64s");
    int tf_mode = ts->tf_mode;
    if (tf_mode < 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "mode '%s'; expected TF, IDF or TFIDF", ts->mode);
    int64_t out_len = ts->out_len;
    if (x->rank != 1 && x->rank != 2) return kiln_kfail(k, KILN_E_INVALID_ARG, "input rank %d; expected 1 or 2", x->rank);
    int64_t rows = x->rank == 2 ? x->dims[0] : 1, cols = x->dims[x->rank - 1];
    int64_t dims[2] = {rows, out_len};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_F32, x->rank, x->rank == 2 ? dims : dims + 1, &y));
    float *out = y->data;
    if (rows > 0 && ts->bad_counts) return kiln_kfail(k, KILN_E_INVALID_MODEL, "ngram_counts out of range");
    /* Each token's hash once; an n-gram's hash combines those of its tokens. */
    size_t ntok = kiln_tensor_numel(x);
    uint64_t *th;
    KILN_TRY(kiln_scratch(k, (ntok ? ntok : 1) * sizeof *th, (void **)&th));
    for (size_t i = 0; i < ntok; i++)
        th[i] = strings ? tf_hash_str(str_at(x, i)) : tf_hash_int(kiln_tensor_get_i64(x, i));
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t n = min_n; n <= max_n; n++) {
            for (int64_t skip = 0; skip <= (n == 1 ? 0 : max_skip); skip++) {
                int64_t span = (n - 1) * (skip + 1);
                size_t step = (size_t)(skip + 1);
                for (int64_t s = 0; s + span < cols; s++) {
                    size_t x0 = (size_t)(r * cols + s);
                    uint64_t h = tf_hash_gram(th + x0, step, n);
                    for (size_t i = (size_t)h & ts->mask; ts->slots[i].n; i = (i + 1) & ts->mask) {
                        const struct tf_slot *sl = &ts->slots[i];
                        if (sl->n != n || sl->hash != h) continue;
                        bool match = true;
                        for (int64_t t = 0; t < n && match; t++) {
                            size_t xi = x0 + (size_t)t * step, pi = sl->at + (size_t)t;
                            match = strings ? strcmp(str_at(x, xi), pool_str(ts, pi)) == 0
                                            : kiln_tensor_get_i64(x, xi) == ts->pool_i[pi];
                        }
                        if (!match) continue;
                        if (sl->col >= 0) out[r * out_len + sl->col] += 1.0f;
                        break;
                    }
                }
            }
        }
    }
    size_t total = (size_t)(rows * out_len);
    for (size_t i = 0; i < total; i++) {
        size_t col = i % (size_t)out_len;
        /* weights are indexed by output position */
        float w = col < ts->n_weights ? ts->weights[col] : 1.0f;
        if (tf_mode == 1) out[i] = out[i] > 0 ? w : 0;
        else if (tf_mode == 2) out[i] *= w;
    }
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_text[] = {
    {"StringNormalizer", "", 10, 0, strnorm_run, strnorm_prepare, 0},
    {"StringConcat", "", 20, 0, strconcat_run, NULL, 0},
    {"StringSplit", "", 20, 0, strsplit_run, strsplit_prepare, 0},
    {"RegexFullMatch", "", 20, 0, regex_run, regex_prepare, 0},
    {"TfIdfVectorizer", "", 9, 0, tfidf_run, tfidf_prepare, 0},
    {0},
};
