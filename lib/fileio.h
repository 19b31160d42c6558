/*
 * lib/fileio.h: the file chores several rooms share: creating a folder with its parents,
 * writing a whole buffer through short writes and signals, reading a small file whole under
 * a cap, writing a file atomically (and durably), and syncing a folder. Nobody else writes the
 * temp-write-fsync-rename sequence. Owns no state.
 */
#ifndef SHARDHOOK_LIB_FILEIO_H
#define SHARDHOOK_LIB_FILEIO_H

#include <stddef.h>

/* mkdir -p with mode 0700: 0, SH_ETOOBIG for an over-long path, SH_EIO otherwise. */
int sh_mkdir_p(const char *path);
/* Write all len bytes to fd, retrying on EINTR and short writes: 0 or SH_EIO. */
int sh_write_all(int fd, const void *buf, size_t len);
/*
 * Read the file path whole into a fresh NUL-terminated *out (*len bytes, NUL not counted) when it
 * holds at most cap bytes: 0, SH_NOTFOUND when there is no such file, SH_ETOOBIG when it is
 * larger than cap, SH_ENOMEM, or SH_EIO. On failure *out is NULL.
 */
int sh_read_file(const char *path, size_t cap, char **out, size_t *len);
/*
 * Write len bytes as the file path, atomically: a hidden temp file next to it (".NAME.tmp" in
 * the same folder), write, fsync when sync, rename over path, then fsync the folder when sync.
 * Readers see the old file or the new one, never a part. With sync, once it returns 0 the file
 * survives a crash; without, a crash may leave the old file (never a torn one on a journaling
 * file system that orders data before the rename). Fails with SH_ETOOBIG (path too long) or
 * SH_EIO, leaving no temp file and path as it was; SH_EUNSYNCED when path is the new file but
 * its folder could not be synced (the rename may not survive a crash).
 */
int sh_write_file_atomic(const char *path, const void *buf, size_t len, int sync);
/* sh_write_file_atomic with sync: once it returns 0 the file survives a crash. */
static inline int sh_write_file_durable(const char *path, const void *buf, size_t len)
{
    return sh_write_file_atomic(path, buf, len, 1);
}
/*
 * fsync the folder dir, so that the files created, renamed or removed in it survive a crash
 * (redis fsyncFileDir): 0, or SH_EUNSYNCED when it cannot be opened or synced.
 */
int sh_fsync_dir(const char *dir);

#endif
