/* cmd_build.c: `kiln build MODEL -o OUT.kiln [--shapes NAME=D0xD1x...,...]
 * [--profile [PROFILE/]INPUT=min:DIMS,opt:DIMS,max:DIMS]... [--threads N] [--level L]
 * [--memory-limit BYTES] [--tune] [--verbose]`.
 *
 * Builds an engine (kiln_builder_*: optimize, prepare kernels, prepack weights, plan memory)
 * and writes it as an engine file (kiln_engine_save, atomically). --shapes fixes inputs to
 * one shape first; each --profile bounds one input of a profile (PROFILE defaults to
 * "default"; profiles are tried in the order first named). The build log goes to stderr:
 * nodes that fall back to another backend always; with --verbose also each profile's planned
 * memory next to the sum of the intermediates, and each node's kernel.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The build log on stderr: fallback nodes always, the rest with --verbose. */
static void log_line(void *user, const char *msg)
{
    const bool *verbose = user;
    if (*verbose || strncmp(msg, "fallback:", 9) == 0) fprintf(stderr, "build: %s\n", msg);
}

/* "[PROFILE/]INPUT=min:DIMS,opt:DIMS,max:DIMS" into the builder. */
static int add_profile(kiln_builder *b, const char *spec)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec) return cli_usage("build", "--profile takes [PROFILE/]INPUT=min:DIMS,opt:DIMS,max:DIMS; got '%s'", spec);
    char head[512];
    size_t hl = (size_t)(eq - spec);
    if (hl >= sizeof head) return cli_usage("build", "--profile: input name too long");
    memcpy(head, spec, hl);
    head[hl] = 0;
    const char *profile = "default", *input = head;
    char *slash = strchr(head, '/');
    if (slash) {
        *slash = 0;
        profile = head;
        input = slash + 1;
    }
    int64_t d[3][16];
    int rank[3] = {-1, -1, -1};
    static const char *const keys[3] = {"min:", "opt:", "max:"};
    const char *p = eq + 1;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int k = 0;
        while (k < 3 && strncmp(p, keys[k], 4) != 0) k++;
        if (k == 3 || len < 4 || !cli_parse_dims(p + 4, len - 4, &rank[k], d[k]))
            return cli_usage("build", "--profile %s: '%.*s' is not min:DIMS, opt:DIMS or max:DIMS (DIMS like 1x3x224x224)",
                             input, (int)len, p);
        p += len + (e != NULL);
    }
    if (rank[0] < 0 || rank[2] < 0)
        return cli_usage("build", "--profile %s needs min: and max: (opt: defaults to max)", input);
    if (rank[1] < 0) {
        rank[1] = rank[2];
        memcpy(d[1], d[2], sizeof d[1]);
    }
    if (rank[0] != rank[1] || rank[1] != rank[2])
        return cli_usage("build", "--profile %s: min, opt and max have different ranks", input);
    kiln_err err = {0};
    if (kiln_builder_add_profile(b, profile, input, rank[0], d[0], d[1], d[2], &err) != KILN_OK)
        return cli_error("%s", err.msg);
    return CLI_OK;
}

int cli_build(int argc, char **argv)
{
    struct cli_out_args a = {0};
    const char *shapes = NULL, *level_s = NULL, *limit_s = NULL, *threads_s = NULL;
    bool tune = false, verbose = false;
    int rc = CLI_USAGE;
    kiln_builder *b = NULL;
    kiln_model *m = NULL;
    kiln_engine *e = NULL;
    kiln_err err = {0};
    if (kiln_builder_create(&b, &err) != KILN_OK) return cli_error("%s", err.msg);
    for (int i = 0; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (cli_out_option(argc, argv, &i, &a, &missing)) {
            if (a.ext_s) {
                rc = cli_usage("build", "--external-data does not apply to engines (their weights are mapped)");
                goto done;
            }
        } else if ((v = cli_opt_value(argc, argv, &i, "--shapes", &missing))) {
            shapes = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--profile", &missing))) {
            if ((rc = add_profile(b, v)) != CLI_OK) goto done;
            rc = CLI_USAGE;
        } else if ((v = cli_opt_value(argc, argv, &i, "--level", &missing))) {
            level_s = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--memory-limit", &missing))) {
            limit_s = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--threads", &missing))) {
            threads_s = v;
        } else if (strcmp(argv[i], "--tune") == 0) {
            tune = true;
        } else if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) {
            verbose = true;
        } else if ((rc = cli_out_positional("build", argv[i], missing, &a)) != CLI_OK) {
            goto done;
        }
    }
    if ((rc = cli_out_done("build", &a)) != CLI_OK) goto done;
    rc = CLI_USAGE;
    if (level_s) {
        kiln_opt_level lv;
        if (strcmp(level_s, "none") == 0) lv = KILN_OPT_NONE;
        else if (strcmp(level_s, "basic") == 0) lv = KILN_OPT_BASIC;
        else if (strcmp(level_s, "extended") == 0) lv = KILN_OPT_EXTENDED;
        else if (strcmp(level_s, "layout") == 0) lv = KILN_OPT_LAYOUT;
        else {
            rc = cli_usage("build", "--level takes none, basic, extended or layout; got '%s'", level_s);
            goto done;
        }
        kiln_builder_set_opt_level(b, lv);
    }
    if (threads_s) {
        long t;
        if (!cli_parse_int(threads_s, 0, 1024, &t)) {
            rc = cli_usage("build", "--threads takes 0 (one per CPU) to 1024; got '%s'", threads_s);
            goto done;
        }
        if (kiln_builder_set_threads(b, (int)t, &err) != KILN_OK) {
            rc = cli_error("%s", err.msg);
            goto done;
        }
    }
    if (limit_s) {
        long lim;
        if (!cli_parse_int(limit_s, 1, 0x7fffffffffffffffL, &lim)) {
            rc = cli_usage("build", "--memory-limit takes a byte count >= 1; got '%s'", limit_s);
            goto done;
        }
        kiln_builder_set_memory_limit(b, (uint64_t)lim);
    }
    kiln_builder_set_tune(b, tune);
    kiln_builder_set_log(b, log_line, &verbose, verbose);
    rc = CLI_FAIL;
    if (shapes) {
        if (!(m = cli_load_model(a.model))) goto done;
        if ((rc = cli_apply_shapes("build", m, shapes)) != CLI_OK) goto done;
        rc = CLI_FAIL;
        if (kiln_builder_build(b, m, &e, &err) != KILN_OK) {
            cli_error("%s: %s", a.model, err.msg);
            goto done;
        }
    } else if (kiln_builder_build_file(b, a.model, &e, &err) != KILN_OK) {
        cli_error("%s: %s", a.model, err.msg);
        goto done;
    }
    if (kiln_engine_save(e, a.out, &err) != KILN_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (verbose) fprintf(stderr, "build: wrote %s\n", a.out);
    rc = CLI_OK;
done:
    kiln_engine_free(e);
    kiln_model_free(m);
    kiln_builder_free(b);
    return rc;
}
