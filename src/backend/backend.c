/* backend.c: the backends built in, and those registered at run time (backend.h). */
#include <pthread.h>
#include <string.h>

#include "backend/backend.h"

#define MAX_BACKENDS 8

/* Registered ones first, the CPU last: it is everyone's fallback. NULL-ended. */
static const struct kiln_backend *list[MAX_BACKENDS + 1] = {&kiln_cpu_backend, NULL};
static pthread_mutex_t list_mu = PTHREAD_MUTEX_INITIALIZER;

const struct kiln_backend *const *kiln_backend_list(void)
{
    return list;
}

const struct kiln_backend *kiln_backend_find(const char *name)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i]->name, name) == 0) return list[i];
    return NULL;
}

kiln_status kiln_backend_register(const struct kiln_backend *be, kiln_err *err)
{
    pthread_mutex_lock(&list_mu);
    size_t n = 0;
    while (list[n]) n++;
    kiln_status st = KILN_OK;
    if (kiln_backend_find(be->name))
        st = kiln_err_set(err, KILN_E_INVALID_ARG, "backend '%s' is already registered", be->name);
    else if (n == MAX_BACKENDS)
        st = kiln_err_set(err, KILN_E_LIMIT, "at most %d backends", MAX_BACKENDS);
    else {
        /* Before the CPU, which stays last. */
        list[n + 1] = NULL;
        list[n] = list[n - 1];
        list[n - 1] = be;
    }
    pthread_mutex_unlock(&list_mu);
    return st;
}
