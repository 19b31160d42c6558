/* lib/fileio.c: folders and whole writes for lib/fileio.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/errors.h"
#include "lib/fileio.h"

int sh_mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return SH_ETOOBIG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) && errno != EEXIST)
            return SH_EIO;
        *p = '/';
    }
    if (mkdir(tmp, 0700) && errno != EEXIST)
        return SH_EIO;
    return SH_OK;
}

int sh_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return SH_EIO;
        done += (size_t)w;
    }
    return SH_OK;
}

int sh_read_file(const char *path, size_t cap, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? SH_ENOTFOUND : SH_EIO;
    char *buf = malloc(cap + 2);
    size_t n = buf ? fread(buf, 1, cap + 1, f) : 0;
    int rc = !buf ? SH_ENOMEM : ferror(f) ? SH_EIO : n > cap ? SH_ETOOBIG : SH_OK;
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return SH_OK;
}

int sh_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return SH_EUNSYNCED;
    int rc = fsync(fd) ? SH_EUNSYNCED : SH_OK;
    int err = errno;
    close(fd);
    errno = err; /* the caller may name the error */
    return rc;
}

/* path's folder and the hidden temp name next to it: 0 or SH_ETOOBIG */
static int temp_of(const char *path, char *dir, size_t dir_cap, char *tmp, size_t tmp_cap)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int n = slash ? snprintf(dir, dir_cap, "%.*s", slash == path ? 1 : (int)(slash - path), path)
                  : snprintf(dir, dir_cap, ".");
    if (n < 0 || (size_t)n >= dir_cap)
        return SH_ETOOBIG;
    if (!*base)
        return SH_EIO; /* a folder, not a file */
    n = slash ? snprintf(tmp, tmp_cap, "%.*s/.%s.tmp", (int)(slash - path), path, base)
              : snprintf(tmp, tmp_cap, ".%s.tmp", base);
    return n < 0 || (size_t)n >= tmp_cap ? SH_ETOOBIG : SH_OK;
}

int sh_write_file_atomic(const char *path, const void *buf, size_t len, int sync)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    int rc = temp_of(path, dir, sizeof(dir), tmp, sizeof(tmp));
    if (rc)
        return rc;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return SH_EIO;
    rc = sh_write_all(fd, buf, len);
    if (!rc && sync && fsync(fd))
        rc = SH_EIO;
    if (close(fd) && !rc)
        rc = SH_EIO;
    if (!rc && rename(tmp, path))
        rc = SH_EIO;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    /* renamed; without the folder's fsync the rename itself may not survive a crash */
    return sync ? sh_fsync_dir(dir) : SH_OK;
}
