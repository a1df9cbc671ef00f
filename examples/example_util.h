/* example_util.h: what the three engine examples share, on the public API only (kiln.h):
 * loading the model from argv[1] or from the tiny model embedded in tiny_model.h, making an
 * input tensor for a graph input with a deterministic fill, and printing a tensor.
 *
 * Header-only (static functions) so that each example stays one file to compile.
 */
#ifndef KILN_EXAMPLE_UTIL_H
#define KILN_EXAMPLE_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kiln.h"
#include "tiny_model.h"

/* Loads the model at `path`, or the embedded tiny model when path is NULL. Prints the error
 * and returns NULL on failure; free the model with kiln_model_free. */
static kiln_model *example_load(const char *path)
{
    kiln_model *m = NULL;
    kiln_err err = {0};
    kiln_status st = path ? kiln_model_load_file(path, &m, &err)
                          : kiln_model_load_buffer(kiln_tiny_model, sizeof kiln_tiny_model, NULL, &m, &err);
    if (st) {
        fprintf(stderr, "cannot load %s: %s (%s)\n", path ? path : "the embedded model", err.msg,
                kiln_status_name(st));
        return NULL;
    }
    return m;
}

/* A tensor for graph input i of m: its declared type, every symbolic or unknown dim taken as
 * `dyn`, filled with a pattern that depends only on the element index (floats: -1, -0.5, 0,
 * 0.5, ... 2.5 repeating; integers: 0..7 repeating; bool: alternating). Other element types
 * stay zero. NULL (after a message) when the input is not a tensor. */
static kiln_value *example_input(const kiln_model *m, size_t i, int64_t dyn)
{
    kiln_err err = {0};
    kiln_dtype dt = kiln_model_input_dtype(m, i);
    int rank = kiln_model_input_rank(m, i);
    int64_t dims[16];
    if (kiln_model_input_kind(m, i) != KILN_VALUE_TENSOR || dt == KILN_DTYPE_UNDEFINED || rank < 0 || rank > 16) {
        fprintf(stderr, "input '%s' is not a tensor of known type and rank; this example makes only those\n",
                kiln_model_input_name(m, i));
        return NULL;
    }
    for (int d = 0; d < rank; d++) {
        int64_t n = kiln_model_input_dim(m, i, d, NULL);
        dims[d] = n >= 0 ? n : dyn;
    }
    kiln_value *v = NULL;
    if (kiln_value_create_tensor(dt, rank, dims, &v, &err)) {
        fprintf(stderr, "input '%s': %s\n", kiln_model_input_name(m, i), err.msg);
        return NULL;
    }
    size_t n = kiln_value_numel(v);
    void *data = kiln_value_data(v);
    for (size_t k = 0; k < n; k++) {
        switch (dt) {
        case KILN_DTYPE_F32: ((float *)data)[k] = (float)(k % 8) * 0.5f - 1.0f; break;
        case KILN_DTYPE_F64: ((double *)data)[k] = (double)(k % 8) * 0.5 - 1.0; break;
        case KILN_DTYPE_I64: ((int64_t *)data)[k] = (int64_t)(k % 8); break;
        case KILN_DTYPE_I32: ((int32_t *)data)[k] = (int32_t)(k % 8); break;
        case KILN_DTYPE_BOOL: ((uint8_t *)data)[k] = (uint8_t)(k % 2); break;
        default: break;
        }
    }
    return v;
}

/* Prints "output 'name': float32[2,4] = 0 0 1 2 ..." (at most 16 values). */
static void example_print(const char *name, const kiln_value *v)
{
    if (kiln_value_kind_of(v) != KILN_VALUE_TENSOR) {
        printf("output '%s': a %s of %zu items\n", name,
               kiln_value_kind_of(v) == KILN_VALUE_SEQUENCE ? "sequence" : "optional", kiln_value_count(v));
        return;
    }
    kiln_dtype dt = kiln_value_dtype(v);
    printf("output '%s': %s[", name, kiln_dtype_name(dt));
    for (int d = 0; d < kiln_value_rank(v); d++) printf("%s%lld", d ? "," : "", (long long)kiln_value_dims(v)[d]);
    printf("] =");
    size_t n = kiln_value_numel(v);
    const void *data = kiln_value_data((kiln_value *)v);
    for (size_t k = 0; k < n && k < 16; k++) {
        switch (dt) {
        case KILN_DTYPE_F32: printf(" %g", (double)((const float *)data)[k]); break;
        case KILN_DTYPE_F64: printf(" %g", ((const double *)data)[k]); break;
        case KILN_DTYPE_I64: printf(" %lld", (long long)((const int64_t *)data)[k]); break;
        case KILN_DTYPE_I32: printf(" %d", ((const int32_t *)data)[k]); break;
        case KILN_DTYPE_BOOL: printf(" %d", ((const uint8_t *)data)[k]); break;
        default: printf(" ?"); break;
        }
    }
    printf("%s\n", n > 16 ? " ..." : "");
}

#endif
