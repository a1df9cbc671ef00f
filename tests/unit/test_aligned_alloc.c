/* test_aligned_alloc.c: kiln_aligned_alloc (base/base.h), which places blocks of 2 MB and more
 * in mappings of their own advised huge pages (the weights and arenas of engines).
 *
 * Every size, small and large, on every alignment: the pointer has the alignment, all n bytes
 * can be written and read back, blocks do not overlap, and free releases them (ASan and the
 * mapping's removal from /proc/self/maps check that). A large block's mapping carries the
 * huge-page advice (VmFlags "hg" in /proc/self/smaps) where the kernel has transparent huge
 * pages (unless KILN_HUGE_PAGES=0 turns them off), and is gone after the free. KILN_FAIL_ALLOC's counting treats a large block as one allocation: it fails when
 * its turn comes and the next one succeeds. kiln_mapping_read copies a file mapping's range
 * (test_mapping_read). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "test_support.h"

/* The VmFlags line of the mapping holding p, in flags (empty when none holds it); whether a
 * mapping holds p at all. */
static bool mapping_flags(const void *p, char *flags, size_t cap)
{
    flags[0] = 0;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return false;
    char line[256];
    bool in = false, found = false;
    uintptr_t a = (uintptr_t)p;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = a >= lo && a < hi;
            found |= in;
        } else if (in && !strncmp(line, "VmFlags:", 8)) {
            snprintf(flags, cap, "%s", line + 8);
        }
    }
    fclose(f);
    return found;
}

/* Whether large blocks get their own advised mapping here: a kernel with transparent huge
 * pages, and KILN_HUGE_PAGES=0 not set. */
static bool expect_huge(void)
{
    const char *e = getenv("KILN_HUGE_PAGES");
    return access("/sys/kernel/mm/transparent_hugepage/enabled", R_OK) == 0 && !(e && !strcmp(e, "0"));
}

static void fill_check(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 131u + seed);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += p[i] != (unsigned char)(i * 131u + seed);
    CHECK(bad == 0, "%zu of %zu bytes did not read back", bad, n);
}

static void test_sizes(void)
{
    const size_t sizes[] = {0, 1, 100, 4095, 4096, (2u << 20) - 1, 2u << 20, (3u << 20) + 5, (17u << 20) + 4093};
    const size_t aligns[] = {8, 64, 4096};
    for (size_t ai = 0; ai < sizeof aligns / sizeof *aligns; ai++) {
        unsigned char *held[sizeof sizes / sizeof *sizes];
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            size_t n = sizes[si], al = aligns[ai];
            unsigned char *p = kiln_aligned_alloc(al, n);
            CHECK(p != NULL, "alloc %zu aligned %zu", n, al);
            CHECK((uintptr_t)p % al == 0, "%p not aligned to %zu", (void *)p, al);
            if (n) fill_check(p, n, (unsigned)(si * 7 + ai));
            held[si] = p;
            if (n >= (2u << 20) && expect_huge()) {
                char flags[320];
                CHECK(mapping_flags(p, flags, sizeof flags), "block of %zu in no mapping", n);
                CHECK(strstr(flags, " hg") != NULL, "block of %zu bytes not advised huge pages: VmFlags%s", n,
                      flags);
            }
        }
        /* The blocks are distinct: rewriting each leaves the others' patterns intact. */
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
            if (sizes[si]) fill_check(held[si], sizes[si], (unsigned)(si * 7 + ai));
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            bool large = sizes[si] >= (2u << 20) && expect_huge();
            kiln_aligned_free(held[si]);
            if (large) {
                char flags[320];
                CHECK(!mapping_flags(held[si], flags, sizeof flags), "freed block of %zu still mapped", sizes[si]);
            }
        }
    }
    kiln_aligned_free(NULL);
    CHECK(kiln_aligned_alloc(3, 16) == NULL, "alignment 3 refused");
    CHECK(kiln_aligned_alloc(8192, 16) == NULL, "alignment above 4096 refused");
    CHECK(kiln_aligned_alloc(64, SIZE_MAX - 8) == NULL, "a size that overflows is refused");
}

static void test_fail_injection(void)
{
    for (int large = 0; large < 2; large++) {
        size_t n = large ? (5u << 20) : 1000;
        kiln_alloc_fail_after(2);
        void *a = kiln_aligned_alloc(64, n);
        void *b = kiln_aligned_alloc(64, n);
        void *c = kiln_aligned_alloc(64, n);
        long count = kiln_alloc_fail_after(0);
        CHECK(a != NULL && b == NULL && c != NULL, "%s: only the 2nd fails (%p %p %p)", large ? "large" : "small",
              a, b, c);
        CHECK(count == 3, "%s: three allocations counted, got %ld", large ? "large" : "small", count);
        kiln_aligned_free(a);
        kiln_aligned_free(c);
    }
}

/* Writes n bytes of pattern `seed` to path through a temporary file renamed over it (a new
 * inode, as kiln_write_file_atomic and `kiln build` replace files). */
static void write_pattern(const char *path, size_t n, unsigned seed)
{
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(i * 2654435761u >> 13) ^ (uint8_t)seed;
    kiln_err err = {0};
    CHECK(kiln_write_file_atomic(path, b, n, &err) == KILN_OK, "%s", err.msg);
    free(b);
}

/* kiln_mapping_read (how engine files' large blob sections are copied out at load): any
 * range, unaligned, equals the mapping's bytes, read through the file or, when the path
 * names another file by now (replaced after the mapping) or is NULL, through the mapping;
 * afterwards the mapping still reads right (its pages come back from the page cache). */
static void test_mapping_read(void)
{
    char path[] = "/tmp/kiln_mapread_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    const size_t n = (5u << 20) + 4099;
    write_pattern(path, n, 0);
    struct kiln_mapping m;
    kiln_err err = {0};
    CHECK(kiln_map_file(path, &m, &err) == KILN_OK, "%s", err.msg);
    uint8_t *want = malloc(n), *got = malloc(n);
    memcpy(want, m.data, n);
    static const size_t ranges[][2] = {{0, 0}, {0, 1}, {1, 4095}, {100, (3u << 20) + 7}, {4096, 8192}, {0, (5u << 20) + 4099}};
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 1) write_pattern(path, n, 0x5a); /* the path now names other bytes */
        for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
            size_t off = ranges[r][0], len = ranges[r][1];
            memset(got, 0xee, n);
            kiln_mapping_read(&m, pass == 2 ? NULL : path, off, len, got);
            CHECK(!memcmp(got, want + off, len), "pass %d: bytes [%zu, +%zu) differ from the mapping's", pass,
                  off, len);
            CHECK(len == n || got[len] == 0xee, "pass %d: wrote past [%zu, +%zu)", pass, off, len);
        }
        CHECK(!memcmp(m.data, want, n), "pass %d: the mapping reads other bytes after the copies", pass);
    }
    kiln_unmap(&m);
    free(want);
    free(got);
    unlink(path);
}

int main(void)
{
    test_sizes();
    test_fail_injection();
    test_mapping_read();
    return test_summary("test_aligned_alloc");
}
