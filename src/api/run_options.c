/* run_options.c: kiln_run_options_* (kiln.h): a timeout and a cancel flag for runs. The
 * executor (src/exec/exec.c, exec_check) reads them before every node and every Loop/Scan
 * iteration; docs/design.md, "Run options". */
#include <math.h>

#include "exec/engine.h"

kiln_status kiln_run_options_create(kiln_run_options **out, kiln_err *err)
{
    *out = kiln_calloc(1, sizeof **out);
    if (!*out) return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating run options");
    atomic_init(&(*out)->cancelled, 0);
    return KILN_OK;
}

void kiln_run_options_free(kiln_run_options *ro)
{
    kiln_free(ro);
}

kiln_status kiln_run_options_set_timeout(kiln_run_options *ro, double seconds, kiln_err *err)
{
    if (!(seconds >= 0) || isinf(seconds))
        return kiln_err_set(err, KILN_E_INVALID_ARG,
                            "run options: timeout %g s; expected 0 (none) or a finite number of "
                            "seconds", seconds);
    ro->timeout_s = seconds;
    return KILN_OK;
}

void kiln_run_options_cancel(kiln_run_options *ro)
{
    if (ro) atomic_store(&ro->cancelled, 1);
}

void kiln_run_options_reset(kiln_run_options *ro)
{
    if (ro) atomic_store(&ro->cancelled, 0);
}

int kiln_run_options_cancelled(const kiln_run_options *ro)
{
    /* C11's atomic_load takes a non-const pointer; reading does not modify. */
    return ro ? atomic_load((atomic_int *)&ro->cancelled) : 0;
}
