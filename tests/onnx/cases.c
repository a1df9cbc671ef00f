/* tests/onnx/cases.c: the case discovery of cases.h. */
#include "cases.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t list_dir(const char *dir, const char *prefix, int dirs, char ***out)
{
    DIR *d = opendir(dir);
    size_t n = 0, cap = 0;
    char **names = NULL;
    *out = NULL;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
        char p[8192];
        if ((size_t)snprintf(p, sizeof p, "%.4000s/%.255s", dir, e->d_name) >= sizeof p) continue;
        if (dirs && !is_dir(p)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

void free_list(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

size_t read_lines(const char *path, char ***out)
{
    FILE *f = fopen(path, "r");
    size_t n = 0, cap = 0;
    char **lines = NULL, buf[512];
    *out = NULL;
    if (!f) return 0;
    while (fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\r\n")] = 0;
        if (!buf[0] || buf[0] == '#') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            char **nl = realloc(lines, cap * sizeof *nl);
            if (!nl) break;
            lines = nl;
        }
        lines[n++] = strdup(buf);
    }
    fclose(f);
    *out = lines;
    return n;
}

int name_in(const char *name, char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0) return 1;
    return 0;
}

int cases_find(const char *data, const char *const *filters, size_t n_filters, struct case_list *out)
{
    static const char *suites[] = {"node", "simple", "pytorch-operator"};
    size_t cap = 0;
    *out = (struct case_list){0};
    for (size_t s = 0; s < 3; s++) {
        char sd[4096];
        snprintf(sd, sizeof sd, "%s/%s", data, suites[s]);
        char **names;
        size_t n = list_dir(sd, "", 1, &names);
        for (size_t i = 0; i < n; i++) {
            char full[512];
            snprintf(full, sizeof full, "%s/%.400s", suites[s], names[i]);
            int keep = n_filters == 0;
            for (size_t f = 0; f < n_filters && !keep; f++) keep = strstr(full, filters[f]) != NULL;
            if (!keep) continue;
            if (out->n == cap) {
                cap = cap ? 2 * cap : 1024;
                char **nn = realloc(out->names, cap * sizeof *nn);
                if (nn) out->names = nn;
                char **nd = realloc(out->dirs, cap * sizeof *nd);
                if (nd) out->dirs = nd;
                if (!nn || !nd) {
                    free_list(names, n);
                    return -1;
                }
            }
            char p[8192];
            snprintf(p, sizeof p, "%s/%s", sd, names[i]);
            out->names[out->n] = strdup(full);
            out->dirs[out->n++] = strdup(p);
        }
        free_list(names, n);
    }
    return 0;
}

void cases_free(struct case_list *cl)
{
    free_list(cl->names, cl->n);
    free_list(cl->dirs, cl->n);
    *cl = (struct case_list){0};
}
