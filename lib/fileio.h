/*
 * lib/fileio.h: the two file chores several rooms share: creating a folder with its parents,
 * and writing a whole buffer through short writes and signals. Owns no state.
 */
#ifndef SHARDHOOK_LIB_FILEIO_H
#define SHARDHOOK_LIB_FILEIO_H

#include <stddef.h>

/* mkdir -p with mode 0700: 0, SH_ETOOBIG for an over-long path, SH_EIO otherwise. */
int sh_mkdir_p(const char *path);
/* Write all len bytes to fd, retrying on EINTR and short writes: 0 or SH_EIO. */
int sh_write_all(int fd, const void *buf, size_t len);

#endif
