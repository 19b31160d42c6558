/*
 * tests/fuzz/scratch.h: what the harnesses that read files share: CHECK (abort, so libFuzzer
 * keeps the input) and one scratch folder per process, made at start under /dev/shm when it
 * exists, emptied before each input and removed at exit. Header-only: each harness is one
 * program.
 */
#ifndef SHARDHOOK_TESTS_FUZZ_SCRATCH_H
#define SHARDHOOK_TESTS_FUZZ_SCRATCH_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static char dir[64];

/* Remove every file of the scratch folder, dot-files (temp files) included. */
static void scratch_clean(void)
{
    DIR *dp = opendir(dir);
    CHECK(dp != NULL);
    struct dirent *de;
    char path[512];
    while ((de = readdir(dp))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(dp);
}

static void scratch_remove(void)
{
    scratch_clean();
    rmdir(dir);
}

/* Make the folder "shardhook-fuzz-<tag>-XXXXXX"; removed at exit. */
static void scratch_init(const char *tag)
{
    snprintf(dir, sizeof(dir), "%s/shardhook-fuzz-%s-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", tag);
    CHECK(mkdtemp(dir) != NULL);
    atexit(scratch_remove);
}

#endif
