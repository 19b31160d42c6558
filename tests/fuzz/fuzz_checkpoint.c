/*
 * tests/fuzz/fuzz_checkpoint.c: libFuzzer harness for the checkpoint reader (bridge/checkpoint.c):
 * br_checkpoint_read over a snapshot and a journal, as a restart finds them.
 *
 * Input: one byte (bits 0-1: the shard read, bit 2: no snapshot file, bit 3: no journal file),
 * then the snapshot text, a NUL, and the journal text. Both go into a scratch folder (made once,
 * under /dev/shm when it exists), then the shard is read. What must hold whatever the bytes:
 * only 0, SH_ENOTFOUND, SH_EPARSE or SH_EIO; no descriptor left open; a checkpoint read is
 * whole (a session, the shard inside the total, the write counter at least its n); and when it
 * is this shard's, what a restart then appends to the journal reads back (exactly that
 * checkpoint when the journal had no torn tail), as the next restart would find it. Owns the
 * scratch folder, removed at exit.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge/checkpoint.h"
#include "lib/errors.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "tests/fuzz/scratch.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void path_of(char *out, size_t cap, const char *fmt, int shard)
{
    int n = snprintf(out, cap, "%s/", dir);
    snprintf(out + n, cap - (size_t)n, fmt, shard);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    sh_log_level = SH_LOG_OFF;
    scratch_init("ckpt");
    return 0;
}

static void put_file(const char *fmt, int shard, const uint8_t *p, size_t n)
{
    char path[128];
    path_of(path, sizeof(path), fmt, shard);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK(sh_write_all(fd, p, n) == 0);
    close(fd);
}

/* The lowest free descriptor: the same before and after means none was left open. */
static int lowest_fd(void)
{
    int fd = dup(0);
    CHECK(fd >= 0);
    close(fd);
    return fd;
}

static void check_whole(const struct br_checkpoint *cp)
{
    CHECK(cp->total >= 1 && cp->total <= 65536 && cp->shard >= 0 && cp->shard < cp->total);
    CHECK(cp->session_id[0] != '\0');
    CHECK(memchr(cp->session_id, '\0', sizeof(cp->session_id)));
    CHECK(memchr(cp->resume_url, '\0', sizeof(cp->resume_url)));
    CHECK(cp->clean == 0 || cp->clean == 1);
    CHECK(cp->n_hooks <= BR_CKPT_MAX_HOOKS);
    for (size_t i = 0; i < cp->n_hooks; i++)
        CHECK(memchr(cp->hooks[i].key, '\0', BR_CKPT_KEY_MAX));
}

static void check_same(const struct br_checkpoint *a, const struct br_checkpoint *b)
{
    CHECK(a->shard == b->shard && a->total == b->total && a->seq == b->seq && a->n == b->n);
    CHECK(!strcmp(a->session_id, b->session_id) && !strcmp(a->resume_url, b->resume_url));
    CHECK(a->n_hooks == b->n_hooks);
    for (size_t i = 0; i < a->n_hooks; i++) {
        CHECK(!strcmp(a->hooks[i].key, b->hooks[i].key));
        CHECK(a->hooks[i].acked == b->hooks[i].acked && a->hooks[i].queued == b->hooks[i].queued);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int shard = data[0] & 3;
    const uint8_t *snap = data + 1, *nul = memchr(snap, 0, size - 1);
    size_t snap_len = nul ? (size_t)(nul - snap) : size - 1;
    const uint8_t *jour = nul ? nul + 1 : snap + snap_len;
    size_t jour_len = size - 1 - snap_len - (nul ? 1 : 0);
    scratch_clean();
    if (!(data[0] & 4))
        put_file("shard-%d.json", shard, snap, snap_len);
    if (!(data[0] & 8))
        put_file("shard-%d.journal", shard, jour, jour_len);

    int fd0 = lowest_fd();
    struct br_ckpt_files f;
    br_ckpt_files_init(&f, shard);
    struct br_checkpoint *cp = calloc(1, sizeof(*cp)), *again = calloc(1, sizeof(*again));
    CHECK(cp && again);
    int rc = br_checkpoint_read(dir, &f, cp);
    CHECK(rc == 0 || rc == SH_ENOTFOUND || rc == SH_EPARSE || rc == SH_EIO);
    CHECK(f.journal_fd == -1 && lowest_fd() == fd0);
    if (rc == 0) {
        check_whole(cp);
        CHECK(f.n >= cp->n);
    }
    if (rc == 0 && cp->shard == shard) { /* another shard's is ignored (bridge/deliver.c) */
        /* a restart carries on: the next journal line is the newest, and reads back as written */
        uint64_t n = f.n;
        int arc = br_checkpoint_append(dir, &f, cp);
        CHECK(arc == 0 || arc == SH_ETOOBIG);
        br_ckpt_files_close(dir, &f);
        CHECK(lowest_fd() == fd0);
        if (arc == 0) {
            CHECK(cp->n == n + 1);
            struct br_ckpt_files g;
            br_ckpt_files_init(&g, shard);
            CHECK(br_checkpoint_read(dir, &g, again) == 0);
            CHECK(again->n >= cp->n && lowest_fd() == fd0);
            /*
             * Exactly it, unless a torn tail was there: the append ends it with a newline, and
             * a tail that parses whole (made up: a crash tears the writer's line short) may
             * carry a higher n.
             */
            if (data[0] & 8 || jour_len == 0 || jour[jour_len - 1] == '\n') {
                check_same(cp, again);
                CHECK(g.n == cp->n);
            }
        }
    }
    free(cp);
    free(again);
    return 0;
}
