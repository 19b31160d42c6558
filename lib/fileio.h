/*
 * lib/fileio.h: the file chores several rooms share: creating a folder with its parents,
 * writing a whole buffer through short writes and signals, and writing a file durably.
 * Owns no state.
 */
#ifndef SHARDHOOK_LIB_FILEIO_H
#define SHARDHOOK_LIB_FILEIO_H

#include <stddef.h>

/* mkdir -p with mode 0700: 0, SH_ETOOBIG for an over-long path, SH_EIO otherwise. */
int sh_mkdir_p(const char *path);
/* Write all len bytes to fd, retrying on EINTR and short writes: 0 or SH_EIO. */
int sh_write_all(int fd, const void *buf, size_t len);
/*
 * Write len bytes as the file path, durably: a temp file next to it (path + ".tmp"), write,
 * fsync, rename over path, fsync the folder. Once it returns 0 the file survives a crash.
 * Fails with SH_ETOOBIG (path too long) or SH_EIO, leaving no temp file and path as it was.
 */
int sh_write_file_durable(const char *path, const void *buf, size_t len);

#endif
