/* test_sym.c: symbolic dims (src/infer/sym.c): canonical text, arithmetic, opaque atoms,
 * declared names, and hostile operands (overflow, blow-up) that must give unknown. */
#include <stdio.h>
#include <string.h>

#include "infer/infer_priv.h"
#include "test_support.h"

static struct kiln_model model;
static struct kiln_infer inf;

static struct kiln_dim S(const char *name) { return kiln_sym_declared(&inf, name); }
static struct kiln_dim K(int64_t v) { return kiln_dim_int(v); }

/* d as text: the number, the canonical param, or "?" */
static const char *txt(struct kiln_dim d)
{
    static char buf[8][300];
    static int k;
    char *b = buf[k++ % 8];
    if (d.value >= 0) snprintf(b, 300, "%lld", (long long)d.value);
    else snprintf(b, 300, "%s", d.param ? d.param : "?");
    return b;
}

#define EQ_TXT(d, want)                                                                            \
    do {                                                                                           \
        const char *got_ = txt(d);                                                                 \
        CHECK(strcmp(got_, (want)) == 0, "%s: got '%s', want '%s'", #d, got_, (want));             \
    } while (0)

static void test_canonical(void)
{
    struct kiln_dim N = S("N"), seq = S("seq"), B = S("batch");
    EQ_TXT(N, "N");
    EQ_TXT(kiln_sym_add(&inf, seq, K(1)), "seq+1");
    EQ_TXT(kiln_sym_add(&inf, K(1), seq), "seq+1");
    /* N*8 and 8*N agree; coefficient first */
    struct kiln_dim a = kiln_sym_mul(&inf, N, K(8)), b = kiln_sym_mul(&inf, K(8), N);
    EQ_TXT(a, "8*N");
    CHECK(kiln_dim_eq(a, b), "8*N != N*8");
    CHECK(a.param == b.param, "equal texts are interned once");
    /* atoms sorted inside a term */
    EQ_TXT(kiln_sym_mul(&inf, seq, N), "N*seq");
    EQ_TXT(kiln_sym_mul(&inf, N, seq), "N*seq");
    /* N - N is the known 0; like terms combine */
    struct kiln_dim z = kiln_sym_sub(&inf, N, N);
    CHECK(kiln_dim_known(z) && z.value == 0, "N-N = %s", txt(z));
    EQ_TXT(kiln_sym_add(&inf, kiln_sym_mul(&inf, K(2), N), N), "3*N");
    EQ_TXT(kiln_sym_sub(&inf, kiln_sym_add(&inf, N, K(5)), K(5)), "N");
    /* degree first, constant last; negative terms */
    struct kiln_dim p = kiln_sym_mul(&inf, kiln_sym_add(&inf, N, K(1)), kiln_sym_sub(&inf, N, K(1)));
    EQ_TXT(p, "N*N-1");
    EQ_TXT(kiln_sym_sub(&inf, K(1), N), "-N+1");
    EQ_TXT(kiln_sym_add(&inf, kiln_sym_mul(&inf, N, seq), kiln_sym_add(&inf, B, K(2))), "N*seq+batch+2");
    /* the result of arithmetic parses back: (seq+1)*2 - 2 = 2*seq */
    EQ_TXT(kiln_sym_sub(&inf, kiln_sym_mul(&inf, kiln_sym_add(&inf, seq, K(1)), K(2)), K(2)), "2*seq");
    /* unknown operands give unknown */
    CHECK(!kiln_dim_defined(kiln_sym_add(&inf, N, kiln_dim_unknown())), "N + ? is unknown");
    CHECK(!kiln_dim_defined(kiln_sym_mul(&inf, kiln_dim_unknown(), K(2))), "? * 2 is unknown");
    /* x * 0 = 0 even for symbols */
    CHECK(kiln_sym_mul(&inf, N, K(0)).value == 0, "N*0 is 0");
}

static void test_division(void)
{
    struct kiln_dim N = S("N"), seq = S("seq"), H = S("H");
    EQ_TXT(kiln_sym_floordiv(&inf, K(7), K(2)), "3");
    EQ_TXT(kiln_sym_ceildiv(&inf, K(7), K(2)), "4");
    EQ_TXT(kiln_sym_floordiv(&inf, kiln_sym_add(&inf, kiln_sym_mul(&inf, K(2), N), K(4)), K(2)), "N+2");
    EQ_TXT(kiln_sym_floordiv(&inf, N, K(1)), "N");
    /* not divisible: an opaque atom */
    struct kiln_dim h = kiln_sym_floordiv(&inf, kiln_sym_sub(&inf, H, K(1)), K(2));
    EQ_TXT(h, "(H-1)/2");
    EQ_TXT(kiln_sym_floordiv(&inf, N, K(2)), "N/2");
    /* ceil(a/b) = floor((a+b-1)/b): the same atom as the floor form */
    CHECK(kiln_dim_eq(kiln_sym_ceildiv(&inf, N, K(2)), kiln_sym_floordiv(&inf, kiln_sym_add(&inf, N, K(1)), K(2))),
          "ceil(N/2) = floor((N+1)/2)");
    /* opaque atoms take part in arithmetic: (H-1)/2 + 1 */
    EQ_TXT(kiln_sym_add(&inf, h, K(1)), "(H-1)/2+1");
    EQ_TXT(kiln_sym_mul(&inf, kiln_sym_add(&inf, h, K(1)), K(2)), "2*(H-1)/2+2");
    /* division by a monomial: N*seq*768 / (12*N*seq) = 64 */
    struct kiln_dim tot = kiln_sym_mul(&inf, kiln_sym_mul(&inf, N, seq), K(768));
    struct kiln_dim rest = kiln_sym_mul(&inf, kiln_sym_mul(&inf, N, seq), K(12));
    EQ_TXT(kiln_sym_floordiv(&inf, tot, rest), "64");
    EQ_TXT(kiln_sym_floordiv(&inf, tot, N), "768*seq");
    EQ_TXT(kiln_sym_floordiv(&inf, N, N), "1");
    EQ_TXT(kiln_sym_floordiv(&inf, N, seq), "N/(seq)");
    /* division by 0 or a negative is unknown */
    CHECK(!kiln_dim_defined(kiln_sym_floordiv(&inf, N, K(0))), "N/0 is unknown");
    CHECK(!kiln_dim_defined(kiln_sym_ceildiv(&inf, K(4), K(0))), "ceil(4/0) is unknown");
}

static void test_minmax_and_ints(void)
{
    struct kiln_dim N = S("N"), M = S("M");
    EQ_TXT(kiln_sym_min(&inf, K(3), K(5)), "3");
    EQ_TXT(kiln_sym_max(&inf, K(3), K(5)), "5");
    EQ_TXT(kiln_sym_max(&inf, N, N), "N");
    EQ_TXT(kiln_sym_max(&inf, N, K(0)), "N");
    EQ_TXT(kiln_sym_min(&inf, N, K(0)), "0");
    CHECK(kiln_dim_eq(kiln_sym_min(&inf, N, M), kiln_sym_min(&inf, M, N)), "min commutes");
    EQ_TXT(kiln_sym_min(&inf, N, K(3)), "min(3,N)");
    /* an expression that may be negative is not a size: max(0, N-2) stays */
    EQ_TXT(kiln_sym_max(&inf, kiln_sym_sub(&inf, N, K(2)), K(0)), "max(0,N-2)");
    EQ_TXT(kiln_sym_max(&inf, kiln_sym_add(&inf, kiln_sym_mul(&inf, N, M), K(2)), K(0)), "M*N+2");
    EQ_TXT(kiln_sym_max(&inf, kiln_sym_floordiv(&inf, kiln_sym_sub(&inf, N, K(1)), K(2)), K(0)),
           "max((N-1)/2,0)"); /* operands in byte order */
    EQ_TXT(kiln_sym_max(&inf, S("batch size"), K(0)), "(batch size)");
    /* negative integers (vals) */
    struct kiln_dim m1 = kiln_sym_int(&inf, -1);
    int64_t v = 0;
    CHECK(!kiln_dim_known(m1) && kiln_dim_defined(m1), "-1 is not a known size but is defined");
    CHECK(kiln_dim_int_value(m1, &v) && v == -1, "-1 reads back (%lld)", (long long)v);
    CHECK(kiln_dim_int_value(K(7), &v) && v == 7, "7 reads back");
    CHECK(!kiln_dim_int_value(N, &v), "N is not an integer");
    EQ_TXT(kiln_sym_add(&inf, m1, K(3)), "2");
    EQ_TXT(kiln_sym_sub(&inf, K(2), K(5)), "-3");
    EQ_TXT(kiln_sym_add(&inf, N, m1), "N-1");
    /* eq / ne */
    CHECK(kiln_dim_eq(K(3), K(3)) && !kiln_dim_eq(K(3), K(4)), "known eq");
    CHECK(!kiln_dim_eq(N, K(3)) && !kiln_dim_ne(N, K(3)), "a symbol is neither equal nor unequal to 3");
    CHECK(!kiln_dim_eq(kiln_dim_unknown(), kiln_dim_unknown()), "unknown equals nothing");
    CHECK(kiln_dim_ne(K(3), K(4)) && !kiln_dim_ne(K(3), K(3)), "known ne");
    CHECK(kiln_dim_ne(m1, K(1)), "-1 != 1");
}

static void test_declared_and_fresh(void)
{
    EQ_TXT(S("batch_size"), "batch_size");
    EQ_TXT(S("batch size"), "(batch size)");
    EQ_TXT(S("2*N"), "(2*N)");
    EQ_TXT(S("3"), "(3)");
    EQ_TXT(S("a)-(b"), "(a]-[b)"); /* unbalanced: brackets, so it stays one atom */
    CHECK(!kiln_dim_defined(S("")) && !kiln_dim_defined(S(NULL)), "empty names are unknown");
    /* wrapped atoms still take part in arithmetic as one atom */
    EQ_TXT(kiln_sym_add(&inf, S("batch size"), K(1)), "(batch size)+1");
    EQ_TXT(kiln_sym_mul(&inf, S("a)-(b"), K(2)), "2*(a]-[b)");
    struct kiln_dim f1 = kiln_sym_fresh(&inf, "NonZero"), f2 = kiln_sym_fresh(&inf, "NonZero");
    CHECK(f1.param && f2.param && !kiln_dim_eq(f1, f2), "fresh symbols differ (%s, %s)", txt(f1), txt(f2));
    CHECK(strncmp(txt(f1), "NonZero_", 8) == 0, "fresh symbol is NonZero_<n>: %s", txt(f1));
    struct kiln_dim f3 = kiln_sym_fresh(&inf, "a b/c");
    CHECK(strncmp(txt(f3), "a_b_c_", 6) == 0, "fresh prefix sanitized: %s", txt(f3));
}

static void test_hostile(void)
{
    /* coefficient overflow */
    CHECK(!kiln_dim_defined(kiln_sym_add(&inf, K(INT64_MAX), K(1))), "INT64_MAX+1 is unknown");
    CHECK(!kiln_dim_defined(kiln_sym_mul(&inf, K(INT64_MAX / 2), K(3))), "overflowing product is unknown");
    struct kiln_dim big = kiln_sym_mul(&inf, S("N"), K(INT64_MAX / 2));
    CHECK(!kiln_dim_defined(kiln_sym_mul(&inf, big, K(3))), "overflowing coefficient is unknown");
    /* blow-up: (a+b+c+d+e)^k grows past the term cap and becomes unknown, quickly */
    struct kiln_dim s = kiln_dim_int(0);
    const char *names[] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++) s = kiln_sym_add(&inf, s, S(names[i]));
    struct kiln_dim p = s;
    bool went_unknown = false;
    for (int i = 0; i < 10; i++) {
        p = kiln_sym_mul(&inf, p, s);
        if (!kiln_dim_defined(p)) went_unknown = true;
    }
    CHECK(went_unknown, "a polynomial beyond the caps becomes unknown");
    /* deep degree */
    struct kiln_dim q = S("N");
    for (int i = 0; i < 20; i++) q = kiln_sym_mul(&inf, q, S("N"));
    CHECK(!kiln_dim_defined(q), "N^21 is beyond the degree cap");
    /* a malformed param (not from sym.c) is not a polynomial: arithmetic gives unknown */
    struct kiln_dim bad = {.value = -1, .param = "N+"};
    CHECK(!kiln_dim_defined(kiln_sym_add(&inf, bad, K(1))), "malformed text gives unknown");
    struct kiln_dim bad2 = {.value = -1, .param = ")N("};
    CHECK(!kiln_dim_defined(kiln_sym_mul(&inf, bad2, K(2))), "unbalanced text gives unknown");
    /* long declared names are cut, still one atom */
    char longname[2000];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    longname[5] = ' ';
    struct kiln_dim L = S(longname);
    CHECK(L.param && strlen(L.param) <= 256, "long names are capped");
}

int main(void)
{
    kiln_infer_init(&inf, &model);
    test_canonical();
    test_division();
    test_minmax_and_ints();
    test_declared_and_fresh();
    test_hostile();
    kiln_infer_fini(&inf);
    kiln_arena_free(&model.arena);
    return test_summary("test_sym");
}
