/* cmd_run.c: `kiln run MODEL [--input NAME=FILE]... [--input-dir DIR] [--output-dir DIR]
 * [--format pb|npy] [--threads N] [--print-all] [--level basic|extended] [--timeout S]`.
 *
 * Binds input files to graph inputs (by name, or by position from an ONNX test data set
 * folder), runs one session, then prints or writes the outputs. Every problem the CLI can
 * see before running (unknown or duplicated names, missing inputs, unreadable files) is
 * reported here with the model's own names; element type and shape are validated by
 * kiln_session_run, also before anything runs. Output files are written atomically by the
 * library; if a later output fails to write, the earlier ones of this run are removed, so
 * a failed run leaves no output files behind. --level optimizes the model first
 * (kiln_model_optimize with kiln's fused ops allowed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

struct run_args {
    struct cli_io_args io; /* MODEL, --input, --input-dir, --threads */
    const char *output_dir;
    bool npy, print_all;
    kiln_opt_level level; /* --level: optimize first; KILN_OPT_NONE: as it is */
    double timeout;       /* --timeout seconds; 0 = none */
};

static int parse_args(int argc, char **argv, struct run_args *a)
{
    int rc = cli_io_init(&a->io, argc);
    for (int i = 0; i < argc && rc == CLI_OK; i++) {
        const char *v;
        bool missing = false, taken;
        const char *arg = argv[i];
        if ((rc = cli_io_option("run", argc, argv, &i, &a->io, &taken, &missing)) != CLI_OK || taken) {
            /* one of the shared options */
        } else if ((v = cli_opt_value(argc, argv, &i, "--output-dir", &missing))) {
            if (a->output_dir) return cli_usage("run", "--output-dir given twice");
            a->output_dir = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--format", &missing))) {
            if (strcmp(v, "pb") == 0) a->npy = false;
            else if (strcmp(v, "npy") == 0) a->npy = true;
            else return cli_usage("run", "--format takes pb or npy; got '%s'", v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--level", &missing))) {
            if (strcmp(v, "basic") == 0) a->level = KILN_OPT_BASIC;
            else if (strcmp(v, "extended") == 0) a->level = KILN_OPT_EXTENDED;
            else return cli_usage("run", "--level takes basic or extended; got '%s'", v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--timeout", &missing))) {
            if (!cli_parse_double(v, &a->timeout) || !(a->timeout > 0) || a->timeout > 1e9)
                return cli_usage("run", "--timeout takes seconds, more than 0; got '%s'", v);
        } else if (strcmp(arg, "--print-all") == 0) {
            a->print_all = true;
        } else {
            rc = cli_io_positional("run", arg, missing, &a->io);
        }
        if (rc == CLI_OK && missing) rc = cli_usage("run", "%s needs a value", arg);
    }
    return rc != CLI_OK ? rc : cli_io_done("run", &a->io);
}

/* Fills vals[0..n_in) from --input and --input-dir; every input must be given. */
static int bind_inputs(const kiln_model *m, const struct run_args *a, kiln_value **vals)
{
    size_t n_in = kiln_model_input_count(m);
    char list[512];
    if (cli_read_inputs(m, a->io.n_bind, a->io.in_names, a->io.in_files, a->io.input_dir, vals) != CLI_OK)
        return CLI_FAIL;
    /* Name every missing input at once so one retry can fix them all. */
    size_t o = 0, missing = 0;
    for (size_t k = 0; k < n_in && o < sizeof list; k++)
        if (!vals[k]) {
            o += (size_t)snprintf(list + o, sizeof list - o, "%s'%s'", missing ? ", " : "",
                                  kiln_model_input_name(m, k));
            missing++;
        }
    if (missing)
        return cli_error("missing input%s %s; pass --input NAME=FILE or --input-dir DIR",
                         missing == 1 ? "" : "s", list);
    return CLI_OK;
}

static int make_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return CLI_OK;
        return cli_error("--output-dir '%s' exists and is not a folder", dir);
    }
    if (mkdir(dir, 0777) != 0) return cli_error("cannot create folder '%s': %s", dir, strerror(errno));
    return CLI_OK;
}

static int write_outputs(const kiln_model *m, const struct run_args *a, kiln_value **outs, size_t n_out)
{
    if (a->npy)
        for (size_t i = 0; i < n_out; i++)
            if (kiln_value_kind_of(outs[i]) != KILN_VALUE_TENSOR)
                return cli_error("output '%s' is not a tensor; .npy holds tensors only (use --format pb)",
                                 kiln_model_output_name(m, i));
    if (make_dir(a->output_dir) != CLI_OK) return CLI_FAIL;
    size_t plen = strlen(a->output_dir) + 32;
    char *path = malloc(plen);
    if (!path) return cli_error("out of memory");
    int rc = CLI_OK;
    size_t written = 0;
    for (size_t i = 0; i < n_out && rc == CLI_OK; i++, written++) {
        kiln_err err = {0};
        kiln_status st;
        snprintf(path, plen, "%s/output_%zu.%s", a->output_dir, i, a->npy ? "npy" : "pb");
        if (a->npy) st = kiln_value_write_npy(outs[i], path, &err);
        else st = kiln_value_write_pb(outs[i], kiln_model_output_name(m, i), path, &err);
        if (st != KILN_OK)
            rc = cli_error("output '%s': %s", kiln_model_output_name(m, i), err.msg);
    }
    if (rc != CLI_OK)
        for (size_t i = 0; i + 1 < written; i++) {
            snprintf(path, plen, "%s/output_%zu.%s", a->output_dir, i, a->npy ? "npy" : "pb");
            unlink(path);
        }
    free(path);
    return rc;
}

int cli_run(int argc, char **argv)
{
    struct run_args a = {0};
    kiln_model *m = NULL;
    kiln_session *s = NULL;
    kiln_run_options *ro = NULL;
    kiln_value **vals = NULL, **outs = NULL;
    size_t n_in = 0, n_out = 0;
    int rc = parse_args(argc, argv, &a);
    if (rc != CLI_OK) goto done;
    rc = CLI_FAIL;
    /* The session first: a broken graph or an unsupported op is the problem to report,
     * whatever inputs were given. */
    kiln_err err = {0};
    kiln_session_options opt = {.threads = (int)a.io.threads};
    const kiln_model *qm = NULL;
    rc = cli_open_session("run", a.io.model, &opt, a.level, &m, &s, &qm);
    if (rc != CLI_OK) goto done;
    rc = CLI_FAIL;
    n_in = kiln_model_input_count(qm);
    n_out = kiln_model_output_count(qm);
    vals = calloc(n_in + 1, sizeof *vals);
    outs = calloc(n_out + 1, sizeof *outs);
    if (!vals || !outs) {
        cli_error("out of memory");
        goto done;
    }
    if (bind_inputs(qm, &a, vals) != CLI_OK) goto done;
    if (a.timeout > 0 && (kiln_run_options_create(&ro, &err) != KILN_OK ||
                          kiln_run_options_set_timeout(ro, a.timeout, &err) != KILN_OK)) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (kiln_session_run_with_options(s, ro, n_in, NULL, (const kiln_value *const *)vals, n_out,
                                      outs, &err) != KILN_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (a.output_dir) {
        rc = write_outputs(qm, &a, outs, n_out);
        goto done;
    }
    for (size_t i = 0; i < n_out; i++) {
        printf("%s: ", kiln_model_output_name(qm, i));
        cli_print_value(outs[i], "", a.print_all);
    }
    rc = CLI_OK;
done:
    for (size_t i = 0; vals && i < n_in; i++) kiln_value_free(vals[i]);
    for (size_t i = 0; outs && i < n_out; i++) kiln_value_free(outs[i]);
    free(vals);
    free(outs);
    kiln_session_free(s);
    kiln_run_options_free(ro);
    kiln_model_free(m);
    cli_io_fini(&a.io);
    return rc;
}
