/*
 * atomicfile.c — temp file + fsync + rename (atomicfile.h).
 */
#include "atomicfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int atomicfile_open(struct atomicfile *a, const char *path, char *err, size_t errsize)
{
    memset(a, 0, sizeof(*a));
    a->path = path;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int dirlen = slash ? (int)(slash - path) + 1 : 0;
    if (!*base) {
        snprintf(err, errsize, "'%s' names a folder, not a file", path);
        return -EISDIR;
    }
    int n = snprintf(a->tmp, sizeof(a->tmp), "%.*s.%s.tmp-XXXXXX", dirlen, path, base);
    if (n < 0 || (size_t)n >= sizeof(a->tmp)) {
        snprintf(err, errsize, "'%s': path too long", path);
        return -ENAMETOOLONG;
    }
    int fd = mkstemp(a->tmp);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errsize, "cannot create a temporary file next to '%s': %s", path,
                 strerror(e));
        a->tmp[0] = '\0';
        return -e;
    }
    /* mkstemp makes 0600; the page is an ordinary file for people and web servers to read. */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    if (!(a->f = fdopen(fd, "w"))) {
        int e = errno;
        close(fd);
        unlink(a->tmp);
        a->tmp[0] = '\0';
        snprintf(err, errsize, "cannot write '%s': %s", path, strerror(e));
        return -e;
    }
    return 0;
}

void atomicfile_discard(struct atomicfile *a)
{
    if (a->f) {
        fclose(a->f);
        a->f = NULL;
    }
    if (a->tmp[0]) {
        unlink(a->tmp);
        a->tmp[0] = '\0';
    }
}

int atomicfile_commit(struct atomicfile *a, char *err, size_t errsize)
{
    int e = 0;
    if (fflush(a->f) != 0 || ferror(a->f) || fsync(fileno(a->f)) < 0)
        e = errno ? errno : EIO;
    FILE *f = a->f;
    a->f = NULL;
    if (fclose(f) != 0 && !e)
        e = errno;
    if (!e && rename(a->tmp, a->path) < 0)
        e = errno;
    if (e) {
        snprintf(err, errsize, "cannot write '%s': %s", a->path, strerror(e));
        atomicfile_discard(a);
        return -e;
    }
    a->tmp[0] = '\0';
    char dir[PATH_MAX];
    const char *slash = strrchr(a->path, '/');
    snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - a->path) + 1 : 1,
             slash ? a->path : ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}
