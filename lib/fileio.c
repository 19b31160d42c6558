/* lib/fileio.c: folders and whole writes for lib/fileio.h. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
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
