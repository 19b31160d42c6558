/*
 * tests/fuzz/fuzz_spool.c: libFuzzer harness for the spool's record decoder (bridge/spool.c,
 * br_batch_decode in bridge/batch.c), through the files a restart adopts.
 *
 * Input: one byte (bit 0: give every record that frames right its true CRC, so the fuzzer gets
 * past the checksum; bit 1: a small max_body of 64 bytes), then the bytes of one segment file.
 * The segment goes into a scratch folder (made once, under /dev/shm when it exists), then
 * br_spool_open adopts it and br_spool_pop reads every record back. What must hold whatever
 * the bytes: the open succeeds (a torn or corrupt tail is cut, never fatal); every batch read is
 * whole (an id, events, a body framed as {"events":[...]}, its record size as peeked); read and
 * skipped records together are the batches the open counted; no descriptor is left open; and
 * the batches read, appended again, come back the same and in order. Owns the scratch folder,
 * removed at exit.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "bridge/batch.h"
#include "bridge/spool.h"
#include "lib/errors.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "tests/fuzz/scratch.h"

#define MAGIC 0x31534853u /* "SHS1", as bridge/spool.c writes it */
#define HEAD_BYTES 20
#define FIRST_SEG ((uint64_t)1 << 32)
#define MAX_POP 4096

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    sh_log_level = SH_LOG_OFF;
    scratch_init("spool");
    return 0;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Give each record that frames right, from the start, the CRC of its meta and body. */
static void fix_crcs(uint8_t *p, size_t n)
{
    size_t off = 0;
    while (n - off >= HEAD_BYTES && get32(p + off) == MAGIC) {
        uint64_t len = (uint64_t)get32(p + off + 4) + get32(p + off + 8);
        if (len > n - off - HEAD_BYTES)
            break;
        uLong crc = crc32(crc32(0L, Z_NULL, 0), p + off + HEAD_BYTES, (uInt)len);
        put32(p + off + 16, (uint32_t)crc);
        off += HEAD_BYTES + (size_t)len;
    }
}

static int lowest_fd(void)
{
    int fd = dup(0);
    CHECK(fd >= 0);
    close(fd);
    return fd;
}

static volatile unsigned sink;

static void on_record(void *ud, const char *meta, size_t meta_len)
{
    size_t *n = ud;
    (*n)++;
    if (meta_len) /* readable to its end (ASan checks the reads) */
        sink = (unsigned char)meta[0] ^ (unsigned char)meta[meta_len - 1];
}

static void check_batch(const struct br_batch *b)
{
    size_t idl = strnlen(b->msg_id, sizeof(b->msg_id));
    CHECK(idl > 0 && idl < sizeof(b->msg_id));
    CHECK(b->closed && b->n_events >= 1 && b->n_shards <= BR_BATCH_MAX_SHARDS);
    CHECK(b->n_shards == 0 || b->shards != NULL);
    CHECK(b->body.len >= BR_BATCH_HEAD_LEN + BR_BATCH_TAIL_LEN);
    CHECK(!memcmp(b->body.data, BR_BATCH_HEAD, BR_BATCH_HEAD_LEN));
    CHECK(!memcmp(b->body.data + b->body.len - 2, "]}", 2));
}

static void check_same(const struct br_batch *a, const struct br_batch *b)
{
    CHECK(!strcmp(a->msg_id, b->msg_id) && a->n_events == b->n_events);
    CHECK(a->first_ms == b->first_ms && a->n_shards == b->n_shards);
    CHECK(a->body.len == b->body.len && !memcmp(a->body.data, b->body.data, a->body.len));
    for (uint32_t i = 0; i < a->n_shards; i++)
        CHECK(!memcmp(&a->shards[i], &b->shards[i], sizeof(a->shards[i])));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t max_body = data[0] & 2 ? 64 : (size_t)1 << 20;
    size_t n = size - 1;
    uint8_t *seg = malloc(n ? n : 1);
    CHECK(seg != NULL);
    memcpy(seg, data + 1, n);
    if (data[0] & 1)
        fix_crcs(seg, n);
    scratch_clean();
    char path[512];
    snprintf(path, sizeof(path), "%s/%020" PRIu64 ".seg", dir, FIRST_SEG);
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    CHECK(fwrite(seg, 1, n, fp) == n || n == 0);
    CHECK(fclose(fp) == 0);
    free(seg);

    int fd0 = lowest_fd();
    struct br_spool *sp = NULL;
    size_t seen = 0;
    CHECK(br_spool_open(dir, 1, (size_t)1 << 20, max_body, on_record, &seen, &sp) == 0);
    struct br_spool_stats st;
    br_spool_stats(sp, &st);
    CHECK(st.batches == seen && st.segments <= 1 && st.bytes <= n);

    struct br_batch **got = calloc(MAX_POP, sizeof(*got));
    CHECK(got != NULL);
    size_t n_got = 0;
    uint64_t skipped_bytes = 0;
    for (;;) {
        size_t rec = 0;
        int prc = br_spool_peek(sp, &rec);
        struct br_batch *b = NULL;
        uint64_t skipped = 0;
        int adopted = -1;
        int rc = br_spool_pop(sp, &b, &skipped, &adopted);
        CHECK(prc == rc || (prc == 0 && rc == SH_ECORRUPT));
        if (rc == SH_ENOTFOUND)
            break;
        CHECK(adopted == 1);
        if (rc == SH_ECORRUPT) { /* a record whose batch does not decode: the rest goes */
            CHECK(skipped > 0 && b == NULL);
            skipped_bytes += skipped;
            continue;
        }
        CHECK(rc == 0 && skipped == 0 && b != NULL);
        check_batch(b);
        CHECK(br_spool_record_size(b) == rec);
        CHECK(n_got < MAX_POP);
        got[n_got++] = b;
    }
    /* (events: the record head's count, outside the CRC, may differ from the meta's) */
    CHECK(n_got <= st.batches && (n_got == st.batches) == (skipped_bytes == 0));
    br_spool_stats(sp, &st);
    CHECK(st.batches == 0 && st.events == 0 && st.bytes == 0);

    /* what was read, spooled again, reads back the same and in order */
    for (size_t i = 0; i < n_got; i++) {
        int rc = br_spool_append(sp, got[i]);
        CHECK(rc == 0 || (rc == SH_ETOOBIG && got[i]->body.len > max_body));
        if (rc) {
            br_batch_free(got[i]);
            memmove(got + i, got + i + 1, (n_got - i - 1) * sizeof(*got));
            n_got--, i--;
        }
    }
    for (size_t i = 0; i < n_got; i++) {
        struct br_batch *b = NULL;
        uint64_t skipped = 0;
        int adopted = -1;
        CHECK(br_spool_pop(sp, &b, &skipped, &adopted) == 0 && adopted == 0);
        check_same(got[i], b);
        br_batch_free(b);
        br_batch_free(got[i]);
    }
    free(got);
    struct br_batch *none = NULL;
    uint64_t skipped = 0;
    CHECK(br_spool_pop(sp, &none, &skipped, NULL) == SH_ENOTFOUND);
    br_spool_close(sp);
    CHECK(lowest_fd() == fd0);
    return 0;
}
