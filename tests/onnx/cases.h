/* tests/onnx/cases.h: finding and listing the ONNX backend test cases, shared by the two
 * conformance runners (conformance.c, shape_conformance.c; linked into both executables).
 *
 * A case is a folder <data>/<suite>/<case> of the suites node/, simple/ and
 * pytorch-operator/, named "suite/case". Name lists (--passing, --refused) are text files
 * of one name a line; empty lines and lines starting with '#' are skipped.
 */
#ifndef KILN_TESTS_ONNX_CASES_H
#define KILN_TESTS_ONNX_CASES_H

#include <stddef.h>

/* Whether p is a directory / a regular file. */
int is_dir(const char *p);
int file_exists(const char *p);

/* The sorted names of the entries of dir (not starting with '.') that start with prefix,
 * directories only when dirs; *out gets them (NULL when none), the count is returned. An
 * unreadable dir lists nothing. Free with free_list. */
size_t list_dir(const char *dir, const char *prefix, int dirs, char ***out);
void free_list(char **names, size_t n);

/* The lines of the name list at path into *out (the count; 0 and NULL when the file cannot
 * be read). Free with free_list. */
size_t read_lines(const char *path, char ***out);
/* Whether name is one of list[0..n). */
int name_in(const char *name, char **list, size_t n);

/* The cases under data, suite by suite (node, simple, pytorch-operator), sorted within each:
 * those whose "suite/case" name contains one of filters[0..n_filters), or all when
 * n_filters is 0. names[i] is "suite/case", dirs[i] its folder. */
struct case_list {
    char **names, **dirs;
    size_t n;
};
/* 0 on success, -1 when memory runs out. Free with cases_free (also after a failure). */
int cases_find(const char *data, const char *const *filters, size_t n_filters, struct case_list *out);
void cases_free(struct case_list *cl);

#endif
