/* cmd_check.c: `kiln check MODEL...`: load each model and run kiln_model_check. An engine
 * file is verified instead: every checksum, weights included (kiln_engine_verify), then
 * loaded (version, CPU features, tables).
 *
 * Output per model: "ok", or each problem on its own line (stdout) followed by a one-line
 * "kiln: ..." summary on stderr. A model that does not load prints the load error. With
 * several models every line is prefixed by the model's path. Exit 0 only if all are valid.
 */
#include <stdio.h>

#include "cli.h"

struct check_ctx {
    const char *prefix; /* "path: " or "" */
};

static void on_problem(void *user, const char *message)
{
    const struct check_ctx *c = user;
    printf("%s%s\n", c->prefix, message);
}

static int check_one(const char *path, bool many)
{
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s: ", path);
    struct check_ctx c = {many ? prefix : ""};
    if (kiln_file_is_engine(path)) {
        kiln_err err = {0};
        kiln_engine *e = NULL;
        if (kiln_engine_verify(path, &err) != KILN_OK || kiln_engine_load(path, &e, &err) != KILN_OK)
            return cli_error("%s", err.msg);
        kiln_engine_free(e);
        printf("%sok (engine)\n", c.prefix);
        return CLI_OK;
    }
    kiln_model *m = cli_load_model(path);
    if (!m) return CLI_FAIL;
    size_t n = kiln_model_check(m, on_problem, &c);
    kiln_model_free(m);
    if (n == 0) {
        printf("%sok\n", c.prefix);
        return CLI_OK;
    }
    fflush(stdout);
    return cli_error("%s: %zu problem%s found", path, n, n == 1 ? "" : "s");
}

int cli_check(int argc, char **argv)
{
    if (argc < 1) return cli_usage("check", "check needs a MODEL file");
    for (int i = 0; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1]) return cli_usage("check", "unknown option '%s'", argv[i]);
    int rc = CLI_OK;
    for (int i = 0; i < argc; i++)
        if (check_one(argv[i], argc > 1) != CLI_OK) rc = CLI_FAIL;
    return rc;
}
