/*
 * tests/unit/test_cachestore.c: where single-node mode keeps the entity cache's snapshots
 * (bridge/cachestore.h): `<state_dir>/cache/shard-<id>.snap`, written whole through the atomic
 * durable write (no temp file left, the last one wins), read back byte for byte, a missing
 * file is SH_ENOTFOUND and one past the size cap is refused without being read.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/cachestore.h"
#include "lib/errors.h"
#include "tests/unit/test.h"
#include "tests/unit/test_fs.h"

static char dir[64];

static struct br_cachestore *files(void)
{
    snprintf(dir, sizeof(dir), "/tmp/shardhook-cachestore-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    struct br_cachestore *s = NULL;
    if (br_cachestore_new(dir, NULL, &s))
        abort();
    return s;
}

static int entries(const char *sub)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", dir, sub);
    int n = 0;
    DIR *d = opendir(p);
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.' || (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."));
    if (d)
        closedir(d);
    return d ? n : -1;
}

TEST(a_snapshot_file_is_written_whole_and_read_back)
{
    struct br_cachestore *s = files();
    struct ca_snapshot_io io = br_cachestore_io(s);
    size_t big = (size_t)1 << 20;
    unsigned char *blob = malloc(big);
    ASSERT(blob);
    for (size_t i = 0; i < big; i++)
        blob[i] = (unsigned char)(i * 2654435761u >> 11); /* NUL bytes too */
    struct sh_buf got;
    sh_buf_init(&got, (size_t)8 << 20);
    int none = io.get(io.ud, 3, &got); /* no cache/ folder yet */
    int put1 = io.put(io.ud, 3, "old", 3);
    int put2 = io.put(io.ud, 3, blob, big); /* replaces */
    int get = io.get(io.ud, 3, &got);
    int same = got.len == big && !memcmp(got.data, blob, big);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/cache/shard-3.snap", dir);
    struct stat st;
    int there = !stat(path, &st) && (size_t)st.st_size == big;
    int n = entries("cache"); /* the file, and no temp file beside it */
    sh_buf_free(&got);
    free(blob);
    br_cachestore_free(s);
    rm_rf(dir);
    ASSERT_EQ(none, SH_ENOTFOUND);
    ASSERT_EQ(put1, 0);
    ASSERT_EQ(put2, 0);
    ASSERT_EQ(get, 0);
    ASSERT(same);
    ASSERT(there);
    ASSERT_EQ(n, 1);
}

TEST(a_snapshot_past_the_cap_is_refused_unread)
{
    struct br_cachestore *s = files();
    struct ca_snapshot_io io = br_cachestore_io(s);
    ASSERT_EQ(io.put(io.ud, 0, "x", 1), 0);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/cache/shard-0.snap", dir);
    ASSERT_EQ(truncate(path, (off_t)BR_CACHE_SNAP_MAX + 1), 0); /* sparse: nothing to read */
    struct sh_buf got;
    sh_buf_init(&got, (size_t)1 << 20);
    int rc = io.get(io.ud, 0, &got);
    size_t len = got.len;
    sh_buf_free(&got);
    /* a reader's own cap holds too */
    ASSERT_EQ(io.put(io.ud, 1, "0123456789", 10), 0);
    sh_buf_init(&got, 4);
    int capped = io.get(io.ud, 1, &got);
    sh_buf_free(&got);
    br_cachestore_free(s);
    rm_rf(dir);
    ASSERT_EQ(rc, SH_ETOOBIG);
    ASSERT_EQ(len, 0);
    ASSERT_EQ(capped, SH_ETOOBIG);
}

TEST(the_handoff_worker_refuses_work_before_it_starts)
{
    struct br_cachestore *s = files();
    ASSERT_EQ(br_cachestore_snapshot_then(s, 0, 100, (void (*)(void *))abort, NULL), SH_ECLOSED);
    br_cachestore_free(s);
    rm_rf(dir);
}

TEST_MAIN(RUN(a_snapshot_file_is_written_whole_and_read_back);
          RUN(a_snapshot_past_the_cap_is_refused_unread);
          RUN(the_handoff_worker_refuses_work_before_it_starts))
