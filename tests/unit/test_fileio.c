/*
 * tests/unit/test_fileio.c: the one atomic file write (temp, write, fsync, rename, fsync the
 * folder), the one folder fsync and the capped whole-file read of lib/fileio.h: what a reader of
 * the folder finds after a write that worked and after one that failed.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/errors.h"
#include "lib/fileio.h"
#include "tests/unit/test.h"
#include "tests/unit/test_fs.h"

static char dir[64];

static void new_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/shardhook-fileio-XXXXXX");
    if (!mkdtemp(dir))
        abort();
}

/* The whole file at name in dir, NUL-terminated, into out; its length or -1. */
static long read_file(const char *name, char *out, size_t cap)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        return -1;
    long n = read(fd, out, cap - 1);
    close(fd);
    out[n < 0 ? 0 : n] = '\0';
    return n;
}

/* The names in dir, sorted and joined with spaces ("." and ".." left out). */
static void list_dir(char *out, size_t cap)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        if (strcmp(nm, ".") && strcmp(nm, ".."))
            snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? " " : "", nm);
        free(names[i]);
    }
    free(n >= 0 ? names : NULL);
}

TEST(writes_and_replaces_the_whole_file_leaving_no_temp)
{
    new_dir();
    char p[PATH_MAX], got[256], names[256];
    snprintf(p, sizeof(p), "%s/.state.json.tmp", dir); /* a crash left its temp behind */
    ASSERT_EQ(sh_write_file_atomic(p, "a longer leftover of an earlier run", 35, 0), 0);
    snprintf(p, sizeof(p), "%s/state.json", dir);
    for (int sync = 1; sync >= 0; sync--) {
        ASSERT_EQ(sh_write_file_atomic(p, "{\"a\":1}\n", 8, sync), 0);
        ASSERT_EQ(read_file("state.json", got, sizeof(got)), 8);
        ASSERT_STR_EQ(got, "{\"a\":1}\n");
        ASSERT_EQ(sh_write_file_atomic(p, "{}", 2, sync), 0); /* shorter: nothing of the old */
        ASSERT_STR_EQ((read_file("state.json", got, sizeof(got)), got), "{}");
        list_dir(names, sizeof(names));
        ASSERT_STR_EQ(names, "state.json");
    }
    ASSERT_EQ(sh_write_file_durable(p, "", 0), 0);
    ASSERT_EQ(read_file("state.json", got, sizeof(got)), 0);
    rm_rf(dir);
}

TEST(a_relative_path_writes_in_the_current_folder)
{
    new_dir();
    char cwd[PATH_MAX], got[64], names[256];
    ASSERT(getcwd(cwd, sizeof(cwd)) != NULL);
    ASSERT_EQ(chdir(dir), 0);
    int rc = sh_write_file_durable("plain.txt", "x", 1);
    ASSERT_EQ(chdir(cwd), 0);
    ASSERT_EQ(rc, 0);
    ASSERT_STR_EQ((read_file("plain.txt", got, sizeof(got)), got), "x");
    list_dir(names, sizeof(names));
    ASSERT_STR_EQ(names, "plain.txt");
    rm_rf(dir);
}

TEST(a_failed_write_leaves_the_old_file_and_no_temp)
{
    new_dir();
    char p[PATH_MAX], got[64], names[256];
    /* no such folder */
    snprintf(p, sizeof(p), "%s/missing/f.json", dir);
    ASSERT_EQ(sh_write_file_durable(p, "x", 1), SH_EIO);
    /* the rename fails (path is a folder that is not empty): the temp is removed */
    snprintf(p, sizeof(p), "%s/busy", dir);
    ASSERT_EQ(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/busy/inside", dir);
    ASSERT_EQ(sh_write_file_durable(p, "in", 2), 0);
    snprintf(p, sizeof(p), "%s/busy", dir);
    ASSERT_EQ(sh_write_file_durable(p, "new", 3), SH_EIO);
    list_dir(names, sizeof(names));
    ASSERT_STR_EQ(names, "busy");
    ASSERT_STR_EQ((read_file("busy/inside", got, sizeof(got)), got), "in");
    /* a folder path is no file */
    snprintf(p, sizeof(p), "%s/", dir);
    ASSERT_EQ(sh_write_file_durable(p, "x", 1), SH_EIO);
    /* over-long */
    static char long_path[PATH_MAX + 16];
    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[0] = '/';
    ASSERT_EQ(sh_write_file_durable(long_path, "x", 1), SH_ETOOBIG);
    rm_rf(dir);
}

TEST(folder_fsync)
{
    new_dir();
    ASSERT_EQ(sh_fsync_dir(dir), 0);
    ASSERT_EQ(sh_fsync_dir("/"), 0);
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/missing", dir);
    ASSERT_EQ(sh_fsync_dir(p), SH_EUNSYNCED);
    snprintf(p, sizeof(p), "%s/file", dir);
    ASSERT_EQ(sh_write_file_durable(p, "x", 1), 0);
    ASSERT_EQ(sh_fsync_dir(p), SH_EUNSYNCED); /* a file is no folder */
    rm_rf(dir);
}

/* A small file read whole, NUL-terminated; a missing one, a folder and one over the cap say so. */
TEST(reads_a_file_whole_under_its_cap)
{
    new_dir();
    char p[PATH_MAX], *buf = (char *)1;
    size_t len = 99;
    snprintf(p, sizeof(p), "%s/f.json", dir);
    ASSERT_EQ(sh_read_file(p, 16, &buf, &len), SH_ENOTFOUND);
    ASSERT(buf == NULL && len == 0);
    ASSERT_EQ(sh_write_file_durable(p, "{\"a\":1}", 7), 0);
    ASSERT_EQ(sh_read_file(p, 7, &buf, &len), 0);
    ASSERT_EQ(len, 7);
    ASSERT_STR_EQ(buf, "{\"a\":1}");
    free(buf);
    ASSERT_EQ(sh_read_file(p, 6, &buf, &len), SH_ETOOBIG);
    ASSERT(buf == NULL);
    ASSERT_EQ(sh_read_file(dir, 64, &buf, &len), SH_EIO); /* a folder reads as an error */
    ASSERT(buf == NULL);
    rm_rf(dir);
}

TEST_MAIN(RUN(writes_and_replaces_the_whole_file_leaving_no_temp);
          RUN(reads_a_file_whole_under_its_cap); RUN(a_relative_path_writes_in_the_current_folder);
          RUN(a_failed_write_leaves_the_old_file_and_no_temp); RUN(folder_fsync);)
