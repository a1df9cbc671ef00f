/* backend.c: the list of backends built in (backend.h). */
#include <string.h>

#include "backend/backend.h"

const struct kiln_backend *const kiln_backends[] = {
    /* device backends go here, before the CPU */
    &kiln_cpu_backend,
    NULL,
};

const struct kiln_backend *kiln_backend_find(const char *name)
{
    for (size_t i = 0; kiln_backends[i]; i++)
        if (strcmp(kiln_backends[i]->name, name) == 0) return kiln_backends[i];
    return NULL;
}
