/* sym.c: symbolic dims as canonical polynomial text (infer.h, "symbolic dims").
 *
 * A symbolic dim's param is a polynomial with integer coefficients over atoms, printed in
 * one canonical form, so that two dims are equal exactly when their texts are:
 *
 *   text  := term (('+' | '-') term)*        leading '-' allowed
 *   term  := [coef '*'] atom ('*' atom)* | coef
 *   atom  := any token without a top-level '+', '-' or '*' that is not all digits:
 *            an identifier ("N", "seq_len"), an opaque expression ("(H-1)/2", "min(N,M)",
 *            "(batch size)") whose parentheses are balanced
 *
 * Canonical order: the atoms of a term sorted (byte order, so "N*seq"), coefficient first
 * and omitted when 1 ("8*N"), terms by degree (highest first) then by their atoms, the
 * constant last ("N*seq+2*N+1"). Like terms are combined and zero terms dropped, so N-N
 * is the known 0. Results that would need more than SYM_MAX_TERMS terms, SYM_MAX_DEG atoms
 * in a term, SYM_MAX_TEXT bytes of text, or a coefficient beyond int64 become unknown:
 * hostile models cannot make this slow or large.
 *
 * Anything that is not a polynomial (division that does not divide every coefficient,
 * min, max, division by a symbol) becomes one opaque atom whose text is built from its
 * operands' canonical texts, so equal expressions still give equal atoms.
 */
#include <stdio.h>
#include <string.h>

#include "infer/infer_priv.h"

#define SYM_MAX_TERMS 16
#define SYM_MAX_DEG 8
#define SYM_MAX_TEXT 256

struct atom {
    const char *p;
    size_t n;
};

struct term {
    int64_t coef;
    int deg;
    struct atom a[SYM_MAX_DEG];
};

struct poly {
    int n;
    struct term t[SYM_MAX_TERMS];
};

/* ------------------------------------------------------------------ interning */

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

const char *kiln_sym_intern(struct kiln_infer *inf, const char *s, size_t n)
{
    if (!inf || !inf->arena) return NULL;
    if (inf->n_intern * 2 >= inf->cap_intern) {
        size_t cap = inf->cap_intern ? inf->cap_intern * 2 : 256;
        const char **t = kiln_calloc(cap, sizeof *t);
        if (!t) {
            inf->nomem = true;
            return NULL;
        }
        for (size_t i = 0; i < inf->cap_intern; i++) {
            const char *e = inf->intern[i];
            if (!e) continue;
            size_t j = fnv(e, strlen(e)) & (cap - 1);
            while (t[j]) j = (j + 1) & (cap - 1);
            t[j] = e;
        }
        kiln_free(inf->intern);
        inf->intern = t;
        inf->cap_intern = cap;
    }
    size_t j = fnv(s, n) & (inf->cap_intern - 1);
    for (; inf->intern[j]; j = (j + 1) & (inf->cap_intern - 1))
        if (strlen(inf->intern[j]) == n && memcmp(inf->intern[j], s, n) == 0) return inf->intern[j];
    char *c = kiln_arena_strndup(inf->arena, s, n);
    if (!c) {
        inf->nomem = true;
        return NULL;
    }
    inf->intern[j] = c;
    inf->n_intern++;
    return c;
}

/* ------------------------------------------------------------------ dims */

bool kiln_dim_eq(struct kiln_dim a, struct kiln_dim b)
{
    if (a.value >= 0 || b.value >= 0) return a.value == b.value;
    return a.param && b.param && strcmp(a.param, b.param) == 0;
}

bool kiln_dim_ne(struct kiln_dim a, struct kiln_dim b)
{
    int64_t x = 0, y = 0;
    return kiln_dim_int_value(a, &x) && kiln_dim_int_value(b, &y) && x != y;
}

bool kiln_dim_int_value(struct kiln_dim d, int64_t *v)
{
    if (d.value >= 0) {
        *v = d.value;
        return true;
    }
    const char *p = d.param;
    if (!p || p[0] != '-' || !p[1]) return false;
    int64_t x = 0;
    for (p++; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        if (__builtin_mul_overflow(x, 10, &x) || __builtin_sub_overflow(x, *p - '0', &x)) return false;
    }
    *v = x;
    return true;
}

struct kiln_dim kiln_sym_int(struct kiln_infer *inf, int64_t v)
{
    if (v >= 0) return kiln_dim_int(v);
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)v);
    const char *s = kiln_sym_intern(inf, buf, (size_t)n);
    return (struct kiln_dim){.value = -1, .param = s};
}

/* ------------------------------------------------------------------ parsing */

static int atom_cmp(struct atom a, struct atom b)
{
    int c = memcmp(a.p, b.p, a.n < b.n ? a.n : b.n);
    if (c) return c;
    return (a.n > b.n) - (a.n < b.n);
}

static int term_cmp(const struct term *a, const struct term *b)
{
    if (a->deg != b->deg) return b->deg - a->deg; /* higher degree first */
    for (int i = 0; i < a->deg; i++) {
        int c = atom_cmp(a->a[i], b->a[i]);
        if (c) return c;
    }
    return 0;
}

static void sort_atoms(struct term *t)
{
    for (int i = 1; i < t->deg; i++)
        for (int j = i; j > 0 && atom_cmp(t->a[j - 1], t->a[j]) > 0; j--) {
            struct atom x = t->a[j];
            t->a[j] = t->a[j - 1];
            t->a[j - 1] = x;
        }
}

/* Adds term t (atoms sorted) to p, combining like terms. False on overflow or too many. */
static bool poly_add_term(struct poly *p, const struct term *t)
{
    if (t->coef == 0) return true;
    for (int i = 0; i < p->n; i++) {
        if (term_cmp(&p->t[i], t) != 0) continue;
        if (__builtin_add_overflow(p->t[i].coef, t->coef, &p->t[i].coef)) return false;
        if (p->t[i].coef == 0) p->t[i] = p->t[--p->n];
        return true;
    }
    if (p->n == SYM_MAX_TERMS) return false;
    p->t[p->n++] = *t;
    return true;
}

/* Parses canonical (or any well-formed) text into p. False when malformed or too big. */
static bool poly_parse(const char *s, struct poly *p)
{
    p->n = 0;
    size_t i = 0, len = strlen(s);
    if (len == 0 || len > 4 * SYM_MAX_TEXT) return false;
    while (i < len) {
        struct term t = {.coef = 1};
        if (s[i] == '+' || s[i] == '-') {
            if (s[i] == '-') t.coef = -1;
            i++;
        } else if (i > 0) {
            return false;
        }
        for (;;) {
            size_t b = i;
            int depth = 0;
            while (i < len) {
                char ch = s[i];
                if (ch == '(') depth++;
                else if (ch == ')' && --depth < 0) return false;
                else if (depth == 0 && (ch == '+' || ch == '-' || ch == '*')) break;
                i++;
            }
            if (depth != 0 || i == b) return false;
            bool digits = true;
            for (size_t k = b; k < i && digits; k++) digits = s[k] >= '0' && s[k] <= '9';
            if (digits) {
                int64_t v = 0;
                for (size_t k = b; k < i; k++)
                    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s[k] - '0', &v))
                        return false;
                if (__builtin_mul_overflow(t.coef, v, &t.coef)) return false;
            } else {
                if (t.deg == SYM_MAX_DEG) return false;
                t.a[t.deg++] = (struct atom){s + b, i - b};
            }
            if (i < len && s[i] == '*') {
                i++;
                continue;
            }
            break;
        }
        sort_atoms(&t);
        if (!poly_add_term(p, &t)) return false;
    }
    return true;
}

/* d as a polynomial; false when d is unknown or its text is not one. */
static bool poly_of(struct kiln_dim d, struct poly *p)
{
    if (d.value >= 0) {
        p->n = 0;
        if (d.value) p->t[p->n++] = (struct term){.coef = d.value};
        return true;
    }
    return d.param && poly_parse(d.param, p);
}

static void buf_put(char *buf, size_t *len, size_t cap, const char *s, size_t n)
{
    if (*len + n < cap) memcpy(buf + *len, s, n);
    *len += n;
}

/* Canonical text of p into buf (cap bytes); returns its length (>= cap: too long). */
static size_t poly_print(struct poly *p, char *buf, size_t cap)
{
    /* insertion sort: few terms */
    for (int i = 1; i < p->n; i++)
        for (int j = i; j > 0 && term_cmp(&p->t[j - 1], &p->t[j]) > 0; j--) {
            struct term x = p->t[j];
            p->t[j] = p->t[j - 1];
            p->t[j - 1] = x;
        }
    size_t len = 0;
    for (int i = 0; i < p->n; i++) {
        const struct term *t = &p->t[i];
        uint64_t mag = t->coef < 0 ? (uint64_t)0 - (uint64_t)t->coef : (uint64_t)t->coef;
        if (t->coef < 0) buf_put(buf, &len, cap, "-", 1);
        else if (i > 0) buf_put(buf, &len, cap, "+", 1);
        char num[32];
        int nn = snprintf(num, sizeof num, "%llu", (unsigned long long)mag);
        if (t->deg == 0 || mag != 1) {
            buf_put(buf, &len, cap, num, (size_t)nn);
            if (t->deg) buf_put(buf, &len, cap, "*", 1);
        }
        for (int k = 0; k < t->deg; k++) {
            if (k) buf_put(buf, &len, cap, "*", 1);
            buf_put(buf, &len, cap, t->a[k].p, t->a[k].n);
        }
    }
    if (len < cap) buf[len] = 0;
    return len;
}

/* The dim p stands for: a known size, a negative constant, or interned text. */
static struct kiln_dim dim_of(struct kiln_infer *inf, struct poly *p)
{
    if (p->n == 0) return kiln_dim_int(0);
    if (p->n == 1 && p->t[0].deg == 0) return kiln_sym_int(inf, p->t[0].coef);
    char buf[SYM_MAX_TEXT + 1];
    size_t n = poly_print(p, buf, sizeof buf);
    if (n >= sizeof buf) return kiln_dim_unknown();
    const char *s = kiln_sym_intern(inf, buf, n);
    return s ? (struct kiln_dim){.value = -1, .param = s} : kiln_dim_unknown();
}

/* A dim that is one opaque atom with this text. */
static struct kiln_dim opaque(struct kiln_infer *inf, const char *text, size_t n)
{
    if (n > SYM_MAX_TEXT) return kiln_dim_unknown();
    const char *s = kiln_sym_intern(inf, text, n);
    return s ? (struct kiln_dim){.value = -1, .param = s} : kiln_dim_unknown();
}

/* d's text (decimal for known dims) into buf; false when unknown. */
static bool dim_text(struct kiln_dim d, char *buf, size_t cap)
{
    if (d.value >= 0) {
        snprintf(buf, cap, "%lld", (long long)d.value);
        return true;
    }
    if (!d.param || strlen(d.param) >= cap) return false;
    memcpy(buf, d.param, strlen(d.param) + 1);
    return true;
}

/* ------------------------------------------------------------------ arithmetic */

struct kiln_dim kiln_sym_add(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b)
{
    int64_t x = 0, y = 0, r = 0;
    if (kiln_dim_int_value(a, &x) && kiln_dim_int_value(b, &y))
        return __builtin_add_overflow(x, y, &r) ? kiln_dim_unknown() : kiln_sym_int(inf, r);
    struct poly p, q;
    if (!poly_of(a, &p) || !poly_of(b, &q)) return kiln_dim_unknown();
    for (int i = 0; i < q.n; i++)
        if (!poly_add_term(&p, &q.t[i])) return kiln_dim_unknown();
    return dim_of(inf, &p);
}

struct kiln_dim kiln_sym_sub(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b)
{
    int64_t x = 0, y = 0, r = 0;
    if (kiln_dim_int_value(a, &x) && kiln_dim_int_value(b, &y))
        return __builtin_sub_overflow(x, y, &r) ? kiln_dim_unknown() : kiln_sym_int(inf, r);
    struct poly p, q;
    if (!poly_of(a, &p) || !poly_of(b, &q)) return kiln_dim_unknown();
    for (int i = 0; i < q.n; i++) {
        struct term t = q.t[i];
        if (t.coef == INT64_MIN) return kiln_dim_unknown();
        t.coef = -t.coef;
        if (!poly_add_term(&p, &t)) return kiln_dim_unknown();
    }
    return dim_of(inf, &p);
}

struct kiln_dim kiln_sym_mul(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b)
{
    int64_t x = 0, y = 0, r = 0;
    if (kiln_dim_int_value(a, &x) && kiln_dim_int_value(b, &y))
        return __builtin_mul_overflow(x, y, &r) ? kiln_dim_unknown() : kiln_sym_int(inf, r);
    if ((kiln_dim_int_value(a, &x) && x == 0) || (kiln_dim_int_value(b, &y) && y == 0))
        return kiln_dim_int(0);
    struct poly p, q, o = {0};
    if (!poly_of(a, &p) || !poly_of(b, &q)) return kiln_dim_unknown();
    for (int i = 0; i < p.n; i++)
        for (int j = 0; j < q.n; j++) {
            struct term t = {0};
            if (__builtin_mul_overflow(p.t[i].coef, q.t[j].coef, &t.coef)) return kiln_dim_unknown();
            if (p.t[i].deg + q.t[j].deg > SYM_MAX_DEG) return kiln_dim_unknown();
            for (int k = 0; k < p.t[i].deg; k++) t.a[t.deg++] = p.t[i].a[k];
            for (int k = 0; k < q.t[j].deg; k++) t.a[t.deg++] = q.t[j].a[k];
            sort_atoms(&t);
            if (!poly_add_term(&o, &t)) return kiln_dim_unknown();
        }
    return dim_of(inf, &o);
}

/* Floor division for int64 (b > 0). */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

struct kiln_dim kiln_sym_floordiv(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b)
{
    int64_t x = 0, y = 0;
    if (!kiln_dim_defined(a) || !kiln_dim_defined(b)) return kiln_dim_unknown();
    bool bi = kiln_dim_int_value(b, &y);
    if (bi && y <= 0) return kiln_dim_unknown();
    if (bi && kiln_dim_int_value(a, &x)) return kiln_sym_int(inf, floor_div(x, y));
    if (bi && y == 1) return a;
    if (!bi && kiln_dim_eq(a, b)) return kiln_dim_int(1);
    struct poly p;
    if (!poly_of(a, &p)) return kiln_dim_unknown();
    struct poly q;
    if (!bi && poly_of(b, &q) && q.n == 1 && q.t[0].coef > 0 && q.t[0].deg > 0) {
        /* division by a monomial (N*seq*768 / (12*N*seq) = 64): exact when it divides
         * every term */
        struct poly r = {0};
        bool divides = true;
        for (int i = 0; i < p.n && divides; i++) {
            struct term t = p.t[i];
            if (t.coef % q.t[0].coef != 0) {
                divides = false;
                break;
            }
            t.coef /= q.t[0].coef;
            for (int k = 0; k < q.t[0].deg && divides; k++) {
                int at = -1;
                for (int j = 0; j < t.deg && at < 0; j++)
                    if (atom_cmp(t.a[j], q.t[0].a[k]) == 0) at = j;
                if (at < 0) {
                    divides = false;
                    break;
                }
                for (int j = at; j + 1 < t.deg; j++) t.a[j] = t.a[j + 1];
                t.deg--;
            }
            if (divides && !poly_add_term(&r, &t)) divides = false;
        }
        if (divides) return dim_of(inf, &r);
    }
    if (bi) {
        bool divides = true;
        for (int i = 0; i < p.n && divides; i++) divides = p.t[i].coef % y == 0;
        if (divides) {
            for (int i = 0; i < p.n; i++) p.t[i].coef /= y;
            return dim_of(inf, &p);
        }
    }
    char ta[SYM_MAX_TEXT + 1], tb[SYM_MAX_TEXT + 1], out[2 * SYM_MAX_TEXT + 8];
    if (!dim_text(a, ta, sizeof ta) || !dim_text(b, tb, sizeof tb)) return kiln_dim_unknown();
    bool single_atom = p.n == 1 && p.t[0].deg == 1 && p.t[0].coef == 1;
    int n = snprintf(out, sizeof out, bi ? "%s%s%s/%s" : "%s%s%s/(%s)", single_atom ? "" : "(", ta,
                     single_atom ? "" : ")", tb);
    return opaque(inf, out, (size_t)n);
}

struct kiln_dim kiln_sym_ceildiv(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b)
{
    int64_t y;
    if (!kiln_dim_defined(a) || !kiln_dim_defined(b)) return kiln_dim_unknown();
    if (kiln_dim_int_value(b, &y) && y <= 0) return kiln_dim_unknown();
    /* ceil(a/b) = floor((a+b-1)/b) for b > 0: one canonical form for both */
    struct kiln_dim num = kiln_sym_add(inf, a, kiln_sym_sub(inf, b, kiln_dim_int(1)));
    return kiln_sym_floordiv(inf, num, b);
}

/* Whether d is evidently >= 0: known, or a polynomial with positive coefficients over
 * symbols (declared and fresh symbols are sizes); atoms computed from other expressions
 * ("(H-1)/2", "min(...)") may be negative and do not count. */
static bool nonneg(struct kiln_dim d)
{
    if (d.value >= 0) return true;
    struct poly p;
    if (!poly_of(d, &p)) return false;
    for (int i = 0; i < p.n; i++) {
        if (p.t[i].coef < 0) return false;
        for (int k = 0; k < p.t[i].deg; k++) {
            struct atom a = p.t[i].a[k];
            bool computed = a.p[0] != '(' || a.p[a.n - 1] != ')';
            if (a.p[0] != '(') { /* an identifier, or min(...)/max(...) */
                computed = false;
                for (size_t j = 0; j < a.n && !computed; j++) computed = a.p[j] == '(' || a.p[j] == '/';
            } else {
                int depth = 0; /* "(...)" alone, not "(...)/2" */
                for (size_t j = 0; j < a.n && !computed; j++) {
                    depth += a.p[j] == '(' ? 1 : a.p[j] == ')' ? -1 : 0;
                    computed = depth == 0 && j + 1 < a.n;
                }
            }
            if (computed) return false;
        }
    }
    return true;
}

static struct kiln_dim minmax(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b, bool max)
{
    int64_t x = 0, y = 0;
    if (!kiln_dim_defined(a) || !kiln_dim_defined(b)) return kiln_dim_unknown();
    bool ai = kiln_dim_int_value(a, &x), bi = kiln_dim_int_value(b, &y);
    if (ai && bi) return kiln_sym_int(inf, max ? (x > y ? x : y) : (x < y ? x : y));
    if (kiln_dim_eq(a, b)) return a;
    /* sizes are >= 0: max(0, d) = d, min(0, d) = 0, when d is evidently a size */
    if (ai && x == 0 && nonneg(b)) return max ? b : kiln_dim_int(0);
    if (bi && y == 0 && nonneg(a)) return max ? a : kiln_dim_int(0);
    char ta[SYM_MAX_TEXT + 1], tb[SYM_MAX_TEXT + 1], out[2 * SYM_MAX_TEXT + 8];
    if (!dim_text(a, ta, sizeof ta) || !dim_text(b, tb, sizeof tb)) return kiln_dim_unknown();
    bool swap = strcmp(ta, tb) > 0; /* commutative: one text for min(a,b) and min(b,a) */
    int n = snprintf(out, sizeof out, "%s(%s,%s)", max ? "max" : "min", swap ? tb : ta, swap ? ta : tb);
    return opaque(inf, out, (size_t)n);
}

struct kiln_dim kiln_sym_min(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b)
{
    return minmax(inf, a, b, false);
}

struct kiln_dim kiln_sym_max(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b)
{
    return minmax(inf, a, b, true);
}

struct kiln_dim kiln_sym_fresh(struct kiln_infer *inf, const char *prefix)
{
    if (!inf) return kiln_dim_unknown();
    char buf[96];
    size_t n = 0;
    for (const char *p = prefix ? prefix : "d"; *p && n < 63; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
                  (n > 0 && ch >= '0' && ch <= '9');
        buf[n++] = ok ? ch : '_';
    }
    if (n == 0) buf[n++] = 'd';
    n += (size_t)snprintf(buf + n, sizeof buf - n, "_%lu", ++inf->fresh);
    const char *s = kiln_sym_intern(inf, buf, n);
    return s ? (struct kiln_dim){.value = -1, .param = s} : kiln_dim_unknown();
}

static bool is_identifier(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) return false;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
              (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

struct kiln_dim kiln_sym_declared(struct kiln_infer *inf, const char *param)
{
    if (!param || !param[0]) return kiln_dim_unknown();
    size_t n = strlen(param);
    if (is_identifier(param)) {
        const char *s = kiln_sym_intern(inf, param, n);
        return s ? (struct kiln_dim){.value = -1, .param = s} : kiln_dim_unknown();
    }
    if (n > SYM_MAX_TEXT - 2) n = SYM_MAX_TEXT - 2; /* a hostile name: its prefix will do */
    char buf[SYM_MAX_TEXT + 1];
    /* Parentheses must balance inside the atom, or its text would parse as several terms. */
    int depth = 0;
    bool balanced = true;
    for (size_t i = 0; i < n && balanced; i++) {
        if (param[i] == '(') depth++;
        if (param[i] == ')' && --depth < 0) balanced = false;
    }
    balanced = balanced && depth == 0;
    buf[0] = '(';
    for (size_t i = 0; i < n; i++) {
        char ch = param[i];
        if (!balanced && ch == '(') ch = '[';
        if (!balanced && ch == ')') ch = ']';
        buf[i + 1] = ch ? ch : '?';
    }
    buf[n + 1] = ')';
    return opaque(inf, buf, n + 2);
}

/* ------------------------------------------------------------------ evaluation */

bool kiln_sym_eval(const char *text, kiln_sym_lookup_fn lookup, void *user, int64_t *out)
{
    struct poly p;
    if (!text || !poly_parse(text, &p)) return false;
    int64_t sum = 0;
    for (int i = 0; i < p.n; i++) {
        int64_t v = p.t[i].coef;
        for (int j = 0; j < p.t[i].deg; j++) {
            int64_t x;
            const struct atom a = p.t[i].a[j];
            if (a.p[0] == '(' || !lookup(user, a.p, a.n, &x)) return false;
            if (__builtin_mul_overflow(v, x, &v)) return false;
        }
        if (__builtin_add_overflow(sum, v, &sum)) return false;
    }
    *out = sum;
    return true;
}
