/* pbtxt.c: protobuf text format reader (pbtxt.h). A recursive-descent parser over a bounded
 * buffer: every read checks the end first, recursion stops at PBTXT_MAX_DEPTH, and the field
 * count is capped, so no input can make it read out of bounds, recurse without limit or grow
 * without limit.
 */
#include "pbtxt.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
    const char *p, *end, *start;
    int line;
    const char *line_start;
    size_t n_fields;
    char *err;
    size_t err_size;
    bool failed;
};

static void fail(struct parser *ps, const char *fmt, ...)
{
    if (ps->failed) return;
    ps->failed = true;
    int col = (int)(ps->p - ps->line_start) + 1;
    int o = snprintf(ps->err, ps->err_size, "line %d, column %d: ", ps->line, col);
    if (o < 0 || (size_t)o >= ps->err_size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err + o, ps->err_size - (size_t)o, fmt, ap);
    va_end(ap);
}

/* A short description of what is at the cursor, for messages. */
static const char *got(struct parser *ps, char *buf, size_t size)
{
    if (ps->p >= ps->end) return "the end of the text";
    unsigned char c = (unsigned char)*ps->p;
    if (isprint(c)) snprintf(buf, size, "'%c'", c);
    else snprintf(buf, size, "byte 0x%02x", c);
    return buf;
}

static void skip_space(struct parser *ps)
{
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == '\n') {
            ps->p++;
            ps->line++;
            ps->line_start = ps->p;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            ps->p++;
        } else if (c == '#') {
            while (ps->p < ps->end && *ps->p != '\n') ps->p++;
        } else {
            break;
        }
    }
}

static bool peek(struct parser *ps, char c)
{
    skip_space(ps);
    return ps->p < ps->end && *ps->p == c;
}

static bool accept(struct parser *ps, char c)
{
    if (!peek(ps, c)) return false;
    ps->p++;
    return true;
}

static bool is_ident_start(char c) { return isalpha((unsigned char)c) || c == '_'; }
static bool is_ident_char(char c) { return isalnum((unsigned char)c) || c == '_'; }
/* Characters of a number token: digits, sign, '.', exponent, hex digits, 'x', and the
 * letters of inf/nan and suffixes ('f'); the consumer validates the token. */
static bool is_number_char(char c) { return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '+'; }

static char *dup_range(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* Reads an identifier (field name or enum value); NULL on failure (message set). */
static char *read_ident(struct parser *ps, const char *what)
{
    skip_space(ps);
    char b[32];
    if (ps->p >= ps->end || !is_ident_start(*ps->p)) {
        fail(ps, "expected %s (got %s)", what, got(ps, b, sizeof b));
        return NULL;
    }
    const char *s = ps->p;
    while (ps->p < ps->end && is_ident_char(*ps->p)) ps->p++;
    char *d = dup_range(s, (size_t)(ps->p - s));
    if (!d) fail(ps, "out of memory");
    return d;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Appends one string literal at the cursor (unescaped) to buf; false on failure. The
 * unescaped text is never longer than the literal, so buf needs at most the literal's size. */
static bool read_string_literal(struct parser *ps, char *buf, size_t *n)
{
    char q = *ps->p++;
    while (ps->p < ps->end && *ps->p != q) {
        char c = *ps->p++;
        if (c == '\n') {
            ps->p--;
            fail(ps, "string not closed before the end of the line");
            return false;
        }
        if (c != '\\') {
            buf[(*n)++] = c;
            continue;
        }
        if (ps->p >= ps->end) break;
        char e = *ps->p++;
        switch (e) {
        case 'n': buf[(*n)++] = '\n'; break;
        case 't': buf[(*n)++] = '\t'; break;
        case 'r': buf[(*n)++] = '\r'; break;
        case 'a': buf[(*n)++] = '\a'; break;
        case 'b': buf[(*n)++] = '\b'; break;
        case 'f': buf[(*n)++] = '\f'; break;
        case 'v': buf[(*n)++] = '\v'; break;
        case '\\': case '\'': case '"': case '?': buf[(*n)++] = e; break;
        case 'x': {
            int v = 0, k = 0;
            while (k < 2 && ps->p < ps->end && hexval(*ps->p) >= 0) v = v * 16 + hexval(*ps->p++), k++;
            if (k == 0) {
                fail(ps, "\\x needs a hex digit");
                return false;
            }
            buf[(*n)++] = (char)v;
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                int v = e - '0', k = 1;
                while (k < 3 && ps->p < ps->end && *ps->p >= '0' && *ps->p <= '7') v = v * 8 + (*ps->p++ - '0'), k++;
                if (v > 255) {
                    fail(ps, "octal escape above \\377");
                    return false;
                }
                buf[(*n)++] = (char)v;
            } else {
                ps->p--;
                fail(ps, "unknown escape '\\%c'", isprint((unsigned char)e) ? e : '?');
                return false;
            }
        }
    }
    if (ps->p >= ps->end) {
        fail(ps, "string not closed before the end of the text");
        return false;
    }
    ps->p++; /* the closing quote */
    return true;
}

/* Reads a scalar value into f (text, quoted); false on failure. */
static bool read_scalar(struct parser *ps, struct pbtxt_field *f)
{
    skip_space(ps);
    char b[32];
    if (ps->p >= ps->end) {
        fail(ps, "expected a value for '%s' (got the end of the text)", f->name);
        return false;
    }
    char c = *ps->p;
    if (c == '"' || c == '\'') {
        /* Adjacent literals concatenate; their total length bounds the result. */
        size_t cap = (size_t)(ps->end - ps->p) + 1, n = 0;
        char *buf = malloc(cap);
        if (!buf) {
            fail(ps, "out of memory");
            return false;
        }
        do {
            if (!read_string_literal(ps, buf, &n)) {
                free(buf);
                return false;
            }
            skip_space(ps);
        } while (ps->p < ps->end && (*ps->p == '"' || *ps->p == '\''));
        buf[n] = 0;
        f->text = buf;
        f->text_len = n;
        f->quoted = true;
        return true;
    }
    const char *s = ps->p;
    if (is_ident_start(c)) {
        while (ps->p < ps->end && is_ident_char(*ps->p)) ps->p++;
    } else if (c == '-' || c == '+' || c == '.' || isdigit((unsigned char)c)) {
        ps->p++;
        while (ps->p < ps->end && is_number_char(*ps->p)) {
            /* a sign only right after an exponent letter */
            if ((*ps->p == '-' || *ps->p == '+') && !(ps->p[-1] == 'e' || ps->p[-1] == 'E')) break;
            ps->p++;
        }
    } else {
        fail(ps, "expected a value for '%s' (got %s)", f->name, got(ps, b, sizeof b));
        return false;
    }
    f->text_len = (size_t)(ps->p - s);
    f->text = dup_range(s, f->text_len);
    if (!f->text) {
        fail(ps, "out of memory");
        return false;
    }
    return true;
}

static struct pbtxt_field *add_field(struct parser *ps, struct pbtxt_msg *m, const char *name, int line)
{
    if (++ps->n_fields > PBTXT_MAX_FIELDS) {
        fail(ps, "more than %d fields", PBTXT_MAX_FIELDS);
        return NULL;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        struct pbtxt_field *f = realloc(m->fields, cap * sizeof *f);
        if (!f) {
            fail(ps, "out of memory");
            return NULL;
        }
        m->fields = f;
        m->cap = cap;
    }
    struct pbtxt_field *f = &m->fields[m->n];
    memset(f, 0, sizeof *f);
    f->name = dup_range(name, strlen(name));
    if (!f->name) {
        fail(ps, "out of memory");
        return NULL;
    }
    f->line = line;
    m->n++;
    return f;
}

static bool parse_message(struct parser *ps, struct pbtxt_msg *m, char close, int depth);

/* Parses a message body after its opening '{' or '<' into a new message of f. */
static bool read_message_value(struct parser *ps, struct pbtxt_field *f, int depth)
{
    char open = *ps->p++;
    if (depth >= PBTXT_MAX_DEPTH) {
        ps->p--;
        fail(ps, "messages nested deeper than %d", PBTXT_MAX_DEPTH);
        return false;
    }
    f->msg = calloc(1, sizeof *f->msg);
    if (!f->msg) {
        fail(ps, "out of memory");
        return false;
    }
    return parse_message(ps, f->msg, open == '{' ? '}' : '>', depth + 1);
}

/* One value of field `name` (a message or a scalar), appended to m. */
static bool read_value(struct parser *ps, struct pbtxt_msg *m, const char *name, int line, bool colon,
                       int depth)
{
    struct pbtxt_field *f = add_field(ps, m, name, line);
    if (!f) return false;
    if (peek(ps, '{') || peek(ps, '<')) return read_message_value(ps, f, depth);
    if (!colon) {
        char b[32];
        fail(ps, "expected ':' or '{' after '%s' (got %s)", name, got(ps, b, sizeof b));
        return false;
    }
    return read_scalar(ps, f);
}

static bool parse_field(struct parser *ps, struct pbtxt_msg *m, int depth)
{
    skip_space(ps);
    int line = ps->line;
    char *name = read_ident(ps, "a field name");
    if (!name) return false;
    bool ok = true;
    bool colon = accept(ps, ':');
    if (accept(ps, '[')) {
        /* A list: `name: [v1, v2]` is `name: v1 name: v2`; a list of messages may leave out
         * the ':' (`input [ {...}, {...} ]`, as Triton's examples write it). */
        if (!accept(ps, ']')) {
            do {
                if (!read_value(ps, m, name, line, true, depth)) {
                    ok = false;
                    break;
                }
            } while (accept(ps, ','));
            if (ok && !accept(ps, ']')) {
                char b[32];
                fail(ps, "expected ',' or ']' in the list '%s' (got %s)", name, got(ps, b, sizeof b));
                ok = false;
            }
        }
    } else {
        ok = read_value(ps, m, name, line, colon, depth);
    }
    free(name);
    if (ok && !accept(ps, ',')) (void)accept(ps, ';');
    return ok;
}

/* Fields until `close` (0: until the end of the text). */
static bool parse_message(struct parser *ps, struct pbtxt_msg *m, char close, int depth)
{
    for (;;) {
        skip_space(ps);
        if (ps->p >= ps->end) {
            if (close == 0) return true;
            fail(ps, "expected '%c' before the end of the text", close);
            return false;
        }
        if (close && *ps->p == close) {
            ps->p++;
            return true;
        }
        if (!parse_field(ps, m, depth)) return false;
    }
}

void pbtxt_free(struct pbtxt_msg *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->fields[i].name);
        free(m->fields[i].text);
        pbtxt_free(m->fields[i].msg);
    }
    free(m->fields);
    free(m);
}

int pbtxt_parse(const char *text, size_t len, struct pbtxt_msg **out, char *err, size_t err_size)
{
    *out = NULL;
    if (err_size) err[0] = 0;
    if (len > PBTXT_MAX_INPUT) {
        snprintf(err, err_size, "text of %zu bytes; the limit is %u", len, PBTXT_MAX_INPUT);
        return -1;
    }
    struct parser ps = {.p = text, .end = text + len, .start = text, .line = 1, .line_start = text,
                        .err = err, .err_size = err_size};
    struct pbtxt_msg *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    if (!parse_message(&ps, m, 0, 0)) {
        pbtxt_free(m);
        return -1;
    }
    *out = m;
    return 0;
}
