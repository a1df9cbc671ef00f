/* cli.h: shared declarations of the `kiln` command-line tool (tools/cli/).
 *
 * The CLI uses the public API (include/kiln.h) only. Each subcommand is one function
 * taking the arguments after its name and returning the process exit status:
 * 0 success, 1 the model/data is bad or the run failed, 2 usage error.
 */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Prints "kiln: <message>" as one line on stderr. Returns CLI_FAIL for convenience. */
int cli_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* Prints "kiln: <message>" plus "(see 'kiln help CMD')"-style hint; returns CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

/* Loads a model, printing "kiln: <error>" on failure (returns NULL). */
kiln_model *cli_load_model(const char *path);

/* A model or an engine file, opened for running: `run`, `bench` and `info` take either.
 * For a model, *model is the loaded model (the caller frees it after the session) and the
 * session runs it, optimized first at `level`; for an engine file (kiln_file_is_engine),
 * *model is NULL and the session runs the loaded engine, which `threads` and `level` cannot
 * change (a non-default value is a usage error, printed). *m is the model to query. Returns
 * CLI_OK or the status to exit with (message printed). */
int cli_open_session(const char *cmd, const char *path, const kiln_session_options *opt, kiln_opt_level level,
                     kiln_model **model, kiln_session **session, const kiln_model **m);

/* Parses a non-negative decimal integer in [lo, hi]; false when malformed or out of range. */
bool cli_parse_int(const char *s, long lo, long hi, long *out);
/* Parses "D0xD1x..." (len bytes of s) into dims (at most 16); false when malformed. "" is
 * rank 0. */
bool cli_parse_dims(const char *s, size_t len, int *rank, int64_t *dims);
/* Applies "--shapes NAME=D0xD1x...,NAME=..." to m's inputs (kiln_model_set_input_shape);
 * CLI_OK or the status to exit with (message printed; cmd names the command). */
int cli_apply_shapes(const char *cmd, kiln_model *m, const char *spec);
/* Parses a finite double; false when malformed. */
bool cli_parse_double(const char *s, double *out);
/* Option value from "--opt VALUE" or "--opt=VALUE"; NULL when argv[*i] is not `opt`. Advances
 * *i past a separate value. Sets *missing when the option is present but its value is not. */
const char *cli_opt_value(int argc, char **argv, int *i, const char *opt, bool *missing);

/* The arguments `run` and `bench` share: MODEL, --input NAME=FILE (repeatable),
 * --input-dir DIR and --threads N. */
struct cli_io_args {
    const char *model;
    const char **in_names, **in_files; /* --input NAME=FILE, n_bind entries */
    int n_bind;
    const char *input_dir;
    long threads;
};
/* Allocates room for the --input pairs of argc arguments; CLI_FAIL (message printed) on
 * out of memory. */
int cli_io_init(struct cli_io_args *a, int argc);
void cli_io_fini(struct cli_io_args *a);
/* Parses argv[*i] when it is one of the shared options (advancing *i past its value): sets
 * *taken and returns CLI_OK, or the usage status for a malformed value. Not one of them:
 * *taken is false. *missing as cli_opt_value. */
int cli_io_option(const char *cmd, int argc, char **argv, int *i, struct cli_io_args *a, bool *taken,
                  bool *missing);
/* The last branch of a command's option loop: `arg` is an option that lacked its value, an
 * unknown option, or the MODEL (one only). CLI_OK or the usage status. */
int cli_io_positional(const char *cmd, const char *arg, bool missing, struct cli_io_args *a);
/* After the loop: the MODEL must have been given. */
int cli_io_done(const char *cmd, const struct cli_io_args *a);

/* The arguments `convert` and `optimize` share: MODEL, -o/--output OUT.onnx and
 * --external-data BYTES (the save threshold; 0 when not given). */
struct cli_out_args {
    const char *model, *out;
    const char *ext_s; /* --external-data as given */
    long ext;          /* set by cli_out_external */
};
/* Takes argv[*i] when it is -o, --output or --external-data (advancing *i past its value):
 * true. *missing as cli_opt_value. */
bool cli_out_option(int argc, char **argv, int *i, struct cli_out_args *a, bool *missing);
/* The last branch of the option loop: `arg` is an option that lacked its value, an unknown
 * option, or the MODEL (one only). CLI_OK or the usage status. */
int cli_out_positional(const char *cmd, const char *arg, bool missing, struct cli_out_args *a);
/* After the loop: the MODEL and -o must have been given. */
int cli_out_done(const char *cmd, const struct cli_out_args *a);
/* Parses --external-data into a->ext (a byte count >= 1); CLI_OK or the usage status. */
int cli_out_external(const char *cmd, struct cli_out_args *a);

/* "'a', 'b', 'c'" listing of the model's inputs for messages, truncated to fit `size`. */
void cli_input_list(const kiln_model *m, char *buf, size_t size);
/* Reads the files bound to graph inputs into vals[0..input count), by input position:
 * --input NAME=FILE pairs (names[i], files[i], i < n_bind) first, then DIR/input_K.pb of the
 * data-set folder `input_dir` (NULL: none) for every input not bound by name. Each file is
 * read as the input's declared kind. Unknown or repeated names, unreadable files, a folder
 * that is missing an input_K.pb or holds one more than the model has inputs are errors:
 * prints "kiln: ..." and returns CLI_FAIL. Inputs no file binds stay NULL. The caller owns
 * (and frees) every value in vals, on failure too. */
int cli_read_inputs(const kiln_model *m, int n_bind, const char *const *names,
                    const char *const *files, const char *input_dir, kiln_value **vals);

int cli_info(int argc, char **argv);
int cli_check(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_compare(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_convert(int argc, char **argv);
int cli_optimize(int argc, char **argv);
int cli_graph(int argc, char **argv);
int cli_build(int argc, char **argv);
int cli_serve(int argc, char **argv); /* tools/serve/serve.c */

/* Element helpers over kiln.h's in-memory layout. cli_elem_f64 reads element i as a double
 * (for complex types, i indexes the interleaved re/im parts); NaN for types it cannot read. */
bool cli_dtype_is_real(kiln_dtype dt);  /* numeric and not complex */
bool cli_dtype_is_float(kiln_dtype dt); /* any floating type, complex included */
double cli_elem_f64(const void *data, kiln_dtype dt, size_t i);

/* Prints a one-value summary (type, shape, values) with the given indentation; with `all`
 * every element is printed. Shared by run and compare. */
void cli_print_value(const kiln_value *v, const char *indent, bool all);

#endif /* KILN_CLI_H */
