/* lib/fileio.c: folders and whole writes for lib/fileio.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
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

int sh_write_file_durable(const char *path, const void *buf, size_t len)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return SH_ETOOBIG;
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return SH_EIO;
    int rc = sh_write_all(fd, buf, len);
    if (!rc && fsync(fd))
        rc = SH_EIO;
    if (close(fd) && !rc)
        rc = SH_EIO;
    if (!rc && rename(tmp, path))
        rc = SH_EIO;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd))
        rc = SH_EIO; /* renamed, but the rename itself may not survive a crash */
    if (dfd >= 0)
        close(dfd);
    return rc;
}
