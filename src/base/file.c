/* file.c: read-only file mapping and atomic file writes (POSIX mmap, mkstemp, rename). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

/* Maps `path` read-only into m. An empty file gives a valid (kiln_malloc'd, zero-length)
 * pointer rather than NULL, so callers may form data + 0 without undefined behaviour.
 * Errors: KILN_E_IO naming the path and the OS error; KILN_E_NOMEM. */
kiln_status kiln_map_file(const char *path, struct kiln_mapping *m, kiln_err *err)
{
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kiln_err_set(err, KILN_E_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return kiln_err_set(err, KILN_E_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return kiln_err_set(err, KILN_E_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return kiln_err_set(err, KILN_E_LIMIT, "'%s' is too large to map", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size == 0) {
        close(fd);
        m->data = kiln_malloc(0);
        if (!m->data) return kiln_err_set(err, KILN_E_NOMEM, "out of memory");
        m->size = 0;
        m->mapped = false;
        return KILN_OK;
    }
    m->dev = (uint64_t)sb.st_dev, m->ino = (uint64_t)sb.st_ino;
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file alive */
    if (p == MAP_FAILED)
        return kiln_err_set(err, e == ENOMEM ? KILN_E_NOMEM : KILN_E_IO, "cannot map '%s': %s",
                            path, strerror(e));
    m->data = p;
    m->size = size;
    m->mapped = true;
    return KILN_OK;
}

void kiln_mapping_advise_huge(const struct kiln_mapping *m, size_t off, size_t n)
{
#if defined(MADV_HUGEPAGE)
    if (!m || !m->mapped || off >= m->size) return;
    if (n > m->size - off) n = m->size - off;
    uintptr_t a = (uintptr_t)m->data + off, page = 4096;
    uintptr_t lo = a & ~(page - 1), hi = (a + n + page - 1) & ~(page - 1);
    (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)m, (void)off, (void)n;
#endif
}

/* Drops this process's page-table entries for the whole pages inside [off, off + n). */
static void drop_pages(const struct kiln_mapping *m, size_t off, size_t n)
{
#if defined(MADV_DONTNEED)
    uintptr_t a = (uintptr_t)m->data + off, page = 4096;
    uintptr_t lo = (a + page - 1) & ~(page - 1), hi = (a + n) & ~(page - 1);
    if (lo < hi) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
#else
    (void)m, (void)off, (void)n;
#endif
}

void kiln_mapping_read(const struct kiln_mapping *m, const char *path, size_t off, size_t n, uint8_t *dst)
{
    if (off > m->size || n > m->size - off) return;
    for (size_t at = 0; at < n; at += 4096) dst[at] = 0;
    size_t at = 0;
    int fd = m->mapped && path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat sb;
    if (fd >= 0 && fstat(fd, &sb) == 0 && (uint64_t)sb.st_dev == m->dev && (uint64_t)sb.st_ino == m->ino)
        while (at < n) {
            ssize_t r = pread(fd, dst + at, n - at > (1u << 30) ? (1u << 30) : n - at, (off_t)(off + at));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            at += (size_t)r;
        }
    if (fd >= 0) close(fd);
    for (const size_t chunk = (size_t)8 << 20; at < n; at += chunk) { /* the rest from the mapping */
        size_t c = n - at < chunk ? n - at : chunk;
        memcpy(dst + at, m->data + off + at, c);
        if (m->mapped) drop_pages(m, off + at, c);
    }
    if (m->mapped) drop_pages(m, off, n);
}

/* Releases a mapping from kiln_map_file (or a kiln_malloc'd buffer with mapped == false);
 * a zeroed mapping is fine. Leaves m zeroed. */
void kiln_unmap(struct kiln_mapping *m)
{
    if (!m) return;
    if (m->mapped) munmap((void *)m->data, m->size);
    else kiln_free((void *)m->data);
    memset(m, 0, sizeof *m);
}

/* Writes data to a temporary file next to path, flushes it, then renames it over path, so
 * readers see the old file or the new one, never a partial one. On failure the temporary
 * file is removed. */
kiln_status kiln_write_file_atomic(const char *path, const void *data, size_t n, kiln_err *err)
{
    size_t plen = strlen(path);
    char *tmp = kiln_malloc(plen + 16);
    if (!tmp) return kiln_err_set(err, KILN_E_NOMEM, "out of memory");
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        kiln_status st = kiln_err_set(err, KILN_E_IO, "cannot create a temporary file for '%s': %s",
                                      path, strerror(errno));
        kiln_free(tmp);
        return st;
    }
    const uint8_t *p = data;
    size_t left = n;
    int e = 0;
    while (left) {
        ssize_t w = write(fd, p, left > (1u << 30) ? (1u << 30) : left);
        if (w < 0) {
            if (errno == EINTR) continue;
            e = errno;
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (!e && fchmod(fd, 0644) != 0) e = errno;
    if (!e && fsync(fd) != 0) e = errno;
    if (close(fd) != 0 && !e) e = errno;
    if (!e && rename(tmp, path) != 0) e = errno;
    if (e) {
        unlink(tmp);
        kiln_free(tmp);
        return kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", path, strerror(e));
    }
    kiln_free(tmp);
    return KILN_OK;
}
