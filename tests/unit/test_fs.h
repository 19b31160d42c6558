/* tests/unit/test_fs.h: removing a unit test's temporary folder, for tests that write files. */
#ifndef SHARDHOOK_TESTS_UNIT_TEST_FS_H
#define SHARDHOOK_TESTS_UNIT_TEST_FS_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static inline int t_rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Remove a test folder and everything in it. */
static inline void rm_rf(const char *p)
{
    nftw(p, t_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
