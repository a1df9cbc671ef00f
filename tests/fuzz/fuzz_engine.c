/* fuzz_engine.c: fuzz target for engine files (docs/engine-format.md).
 *
 * Input: the bytes of an engine file, as `kiln build` writes them. Checksums guard the
 * header and the graph and meta sections, so that a flipped byte is refused at load; a
 * hostile file, though, carries checksums that match (they are not signatures), and a
 * fuzzer would never get past them. The harness therefore seals a copy of the input first
 * (kiln_engine_file_seal: the file size and every in-bounds section's checksum recomputed)
 * and so reaches what lies behind the checks: the section table, the graph's decoding with
 * its initializers pointing into the weights section, the meta tables (threads, limits,
 * device, profiles, kernel variants, the blob index) and every kernel's prepare with a
 * saved variant and saved blobs. The sealed bytes go into a memfd, loaded by its
 * /proc/self/fd path (kiln_engine_load maps a file), with the blobs left in the mapping for
 * inputs of even length and copied out of it for odd ones (KILN_ENGINE_BLOBS).
 *
 * On success: kiln_engine_verify (every checksum, now matching), every engine query of
 * kiln.h, a session on the engine and one run on zero-filled inputs (fuzz_run_session).
 * Invariants checked: a failure carries a one-line message and leaves no engine; the load
 * of a sealed file verifies; everything is freed (LeakSanitizer).
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <unistd.h>

#include "exec/engine.h"
#include "fuzz_common.h"

static void query_engine(kiln_engine *e)
{
    const kiln_model *m = kiln_engine_model(e);
    FUZZ_CHECK(m != NULL, "loaded engine without a model");
    FUZZ_CHECK(kiln_engine_threads(e) >= 1, "engine threads %d", kiln_engine_threads(e));
    size_t np = kiln_engine_profile_count(e);
    for (size_t i = 0; i < np; i++) {
        uint64_t arena = 0, sum = 0;
        (void)kiln_engine_profile_name(e, i);
        kiln_engine_profile_memory(e, i, &arena, &sum);
    }
    size_t nn = kiln_model_node_count(m);
    for (size_t i = 0; i < nn; i++) {
        const char *backend = NULL, *kernel = NULL, *variant = NULL;
        kiln_engine_node_kernel(e, i, &backend, &kernel, &variant);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size + 1);
    FUZZ_CHECK(buf, "malloc");
    memcpy(buf, data, size);
    kiln_engine_file_seal(buf, size);
    int fd = memfd_create("fuzz-engine", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0, "memfd_create");
    for (size_t done = 0; done < size;) {
        ssize_t w = write(fd, buf + done, size - done);
        FUZZ_CHECK(w > 0, "write to memfd");
        done += (size_t)w;
    }
    free(buf);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);

    /* Both ways of holding the prepacked blobs (engine/file.c blob_home): in the mapping,
     * or copied out of it at load (kiln_mapping_read), picked by the input's length. No
     * other thread runs between inputs: each session is freed before the next. */
    setenv("KILN_ENGINE_BLOBS", size & 1 ? "copy" : "map", 1);
    kiln_engine *e = NULL;
    kiln_err err;
    memset(&err, 0, sizeof err);
    kiln_status st = kiln_engine_load(path, &e, &err);
    if (st) {
        FUZZ_CHECK(fuzz_msg_ok(&err), "engine load failed (%d) without a message", (int)st);
        FUZZ_CHECK(e == NULL, "failed engine load left an engine");
        close(fd);
        return 0;
    }
    memset(&err, 0, sizeof err);
    FUZZ_CHECK(kiln_engine_verify(path, &err) == KILN_OK, "a sealed engine that loads fails verify: %s", err.msg);
    query_engine(e);
    kiln_session *s = NULL;
    memset(&err, 0, sizeof err);
    if (kiln_session_create_from_engine(e, NULL, &s, &err) != KILN_OK) {
        FUZZ_CHECK(fuzz_msg_ok(&err), "session on an engine failed without a message");
        FUZZ_CHECK(s == NULL, "failed session_create_from_engine left a session");
    } else {
        fuzz_run_session(s, kiln_session_model(s));
        kiln_session_free(s);
    }
    kiln_engine_free(e);
    close(fd);
    return 0;
}
