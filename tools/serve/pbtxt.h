/* pbtxt.h: a small, strict reader of protobuf text format (the syntax of Triton's
 * config.pbtxt), without the .proto: it builds a generic tree of named fields whose values
 * are scalars (numbers, identifiers, strings) or nested messages. The caller (config.c)
 * gives the tree its meaning.
 *
 * Grammar (protobuf's text format, the parts config files use):
 *   message := field*
 *   field   := NAME ':' scalar | NAME [':'] '{' message '}' | NAME [':'] '<' message '>'
 *            | NAME [':'] '[' [value (',' value)*] ']'  (a list: one field per element)
 *   scalar  := NUMBER | IDENT | STRING+                  (adjacent strings concatenate)
 * Fields may be followed by ',' or ';'. '#' starts a comment to the end of the line.
 * Strings take "..." or '...' with the C escapes \n \t \r \\ \' \" \xHH and octal \NNN.
 *
 * Bounded: input at most PBTXT_MAX_INPUT bytes, nesting at most PBTXT_MAX_DEPTH, at most
 * PBTXT_MAX_FIELDS fields in all. Never reads past `len`; the text need not be NUL-terminated.
 */
#ifndef KILN_SERVE_PBTXT_H
#define KILN_SERVE_PBTXT_H

#include <stdbool.h>
#include <stddef.h>

#define PBTXT_MAX_INPUT (1u << 20)
#define PBTXT_MAX_DEPTH 32
#define PBTXT_MAX_FIELDS 100000

struct pbtxt_msg;

struct pbtxt_field {
    char *name;
    struct pbtxt_msg *msg; /* a message value, or NULL for a scalar */
    char *text;            /* a scalar's text (strings unescaped, NUL-terminated) */
    size_t text_len;       /* its length (a string may hold NUL bytes) */
    bool quoted;           /* the scalar was a string literal */
    int line;              /* where the field's name starts, 1-based */
};

struct pbtxt_msg {
    struct pbtxt_field *fields;
    size_t n, cap;
};

/* Parses len bytes of text. On success returns 0 and *out is a new tree (free it with
 * pbtxt_free); on failure returns -1, *out is NULL and err holds one line
 * "line L, column C: <what was expected> (got <what was found>)". */
int pbtxt_parse(const char *text, size_t len, struct pbtxt_msg **out, char *err, size_t err_size);
void pbtxt_free(struct pbtxt_msg *m); /* NULL is fine */

#endif /* KILN_SERVE_PBTXT_H */
