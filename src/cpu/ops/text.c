/* src/cpu/ops/text.c: ONNX string ops: StringNormalizer (10), StringConcat (20),
 * StringSplit (20), RegexFullMatch (20), and TfIdfVectorizer (9).
 *
 * Case changes and case-insensitive comparison act on ASCII letters only (the spec leaves
 * locale handling to the implementation; kiln does not depend on the C locale).
 * RegexFullMatch uses glibc's POSIX extended regular expressions (with its \w \s \b
 * extensions) anchored at both ends; RE2 escapes glibc lacks (\d, escapes inside [...]) are
 * translated, and non-greedy operators are refused with a message.
 */
#include <ctype.h>
#include <regex.h>
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

static bool ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

/* ------------------------------------------------------------------ StringNormalizer */

static kiln_status strnorm_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(want_string(k, x, "X"));
    const char *action = kiln_attr_s(k, "case_change_action", "NONE");
    bool sensitive = kiln_attr_i(k, "is_case_sensitive", 0) != 0;
    const char *const *stop = NULL;
    size_t n_stop = kiln_attr_strings(k, "stopwords", &stop);
    int mode = strcmp(action, "LOWER") == 0 ? 1 : strcmp(action, "UPPER") == 0 ? 2 : 0;
    if (!mode && strcmp(action, "NONE") != 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "case_change_action '%s'; expected LOWER, UPPER or NONE", action);
    bool two_d = x->rank == 2;
    if (!(x->rank == 1 || (two_d && x->dims[0] == 1)))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X must be [C] or [1, C]; got rank %d", x->rank);
    size_t n = kiln_tensor_numel(x), kept = 0;
    bool *keep;
    KILN_TRY(kiln_scratch(k, n + 1, (void **)&keep));
    for (size_t i = 0; i < n; i++) {
        keep[i] = true;
        for (size_t s = 0; s < n_stop && keep[i]; s++)
            if (sensitive ? strcmp(str_at(x, i), stop[s]) == 0 : ieq(str_at(x, i), stop[s])) keep[i] = false;
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

static kiln_status strsplit_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(want_string(k, x, "X"));
    const char *delim = kiln_attr_s(k, "delimiter", "");
    int64_t maxsplit = kiln_attr_i(k, "maxsplit", -1);
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

static kiln_status regex_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(want_string(k, x, "X"));
    const char *pattern = kiln_attr_s(k, "pattern", NULL);
    if (!pattern) return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'pattern' is missing");
    char ere[2048];
    KILN_TRY(re2_to_ere(k, pattern, ere, sizeof ere));
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

static kiln_status tfidf_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (x->dtype != KILN_DTYPE_STRING && x->dtype != KILN_DTYPE_I32 && x->dtype != KILN_DTYPE_I64)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X is %s; expected string, int32 or int64",
                          kiln_dtype_name(x->dtype));
    int64_t min_n = kiln_attr_i(k, "min_gram_length", 0), max_n = kiln_attr_i(k, "max_gram_length", 0);
    int64_t max_skip = kiln_attr_i(k, "max_skip_count", 0);
    const char *mode = kiln_attr_s(k, "mode", "TF");
    const int64_t *counts, *indexes, *pool_i = NULL;
    const char *const *pool_s = NULL;
    const float *weights = NULL;
    size_t n_counts = kiln_attr_ints(k, "ngram_counts", &counts);
    size_t n_indexes = kiln_attr_ints(k, "ngram_indexes", &indexes);
    size_t n_pool = kiln_attr_ints(k, "pool_int64s", &pool_i);
    bool strings = n_pool == 0;
    if (strings) n_pool = kiln_attr_strings(k, "pool_strings", &pool_s);
    size_t n_weights = kiln_attr_floats(k, "weights", &weights);
    if (min_n < 1 || max_n < min_n || (size_t)max_n > n_counts || max_skip < 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "gram lengths [%lld, %lld] invalid for %zu ngram_counts",
                          (long long)min_n, (long long)max_n, n_counts);
    if (strings != (x->dtype == KILN_DTYPE_STRING))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input is %s but the pool holds %s", kiln_dtype_name(x->dtype),
                          strings ? "strings" : "int64s");
    int tf_mode = strcmp(mode, "TF") == 0 ? 0 : strcmp(mode, "IDF") == 0 ? 1 : strcmp(mode, "TFIDF") == 0 ? 2 : -1;
    if (tf_mode < 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "mode '%s'; expected TF, IDF or TFIDF", mode);
    int64_t out_len = 0;
    for (size_t i = 0; i < n_indexes; i++)
        if (indexes[i] + 1 > out_len) out_len = indexes[i] + 1;
    if (x->rank != 1 && x->rank != 2) return kiln_kfail(k, KILN_E_INVALID_ARG, "input rank %d; expected 1 or 2", x->rank);
    int64_t rows = x->rank == 2 ? x->dims[0] : 1, cols = x->dims[x->rank - 1];
    int64_t dims[2] = {rows, out_len};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_F32, x->rank, x->rank == 2 ? dims : dims + 1, &y));
    float *out = y->data;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t n = min_n; n <= max_n; n++) {
            size_t start = (size_t)counts[n - 1];
            size_t end = (size_t)n < n_counts ? (size_t)counts[n] : n_pool;
            if (end > n_pool || start > end) return kiln_kfail(k, KILN_E_INVALID_MODEL, "ngram_counts out of range");
            size_t n_grams = (end - start) / (size_t)n;
            for (int64_t skip = 0; skip <= (n == 1 ? 0 : max_skip); skip++) {
                int64_t span = (n - 1) * (skip + 1);
                for (int64_t s = 0; s + span < cols; s++) {
                    for (size_t g = 0; g < n_grams; g++) {
                        bool match = true;
                        for (int64_t t = 0; t < n && match; t++) {
                            size_t xi = (size_t)(r * cols + s + t * (skip + 1));
                            size_t pi = start + g * (size_t)n + (size_t)t;
                            match = strings ? strcmp(str_at(x, xi), pool_s[pi]) == 0
                                            : kiln_tensor_get_i64(x, xi) == pool_i[pi];
                        }
                        if (!match) continue;
                        /* ngram_indexes is indexed by the n-gram's ordinal in the pool */
                        size_t ord = 0;
                        for (int64_t m = 1; m < n; m++) {
                            size_t ms = (size_t)counts[m - 1], me = (size_t)counts[m];
                            ord += (me - ms) / (size_t)m;
                        }
                        ord += g;
                        if (ord < n_indexes) out[r * out_len + indexes[ord]] += 1.0f;
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
        float w = col < n_weights ? weights[col] : 1.0f;
        if (tf_mode == 1) out[i] = out[i] > 0 ? w : 0;
        else if (tf_mode == 2) out[i] *= w;
    }
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_text[] = {
    {"StringNormalizer", "", 10, 0, strnorm_run, NULL, 0},
    {"StringConcat", "", 20, 0, strconcat_run, NULL, 0},
    {"StringSplit", "", 20, 0, strsplit_run, NULL, 0},
    {"RegexFullMatch", "", 20, 0, regex_run, NULL, 0},
    {"TfIdfVectorizer", "", 9, 0, tfidf_run, NULL, 0},
    {0},
};
