/* bridge/deadletter.c: the dead-letter files of bridge/deadletter.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bridge/deadletter.h"
#include "lib/buf.h"
#include "lib/errors.h"
#include "lib/fileio.h"

/* JSON string of arbitrary bytes: bytes >= 0x80 are kept when they form UTF-8, else \u00XX. */
static int put_bytes(struct sh_buf *out, const char *p, size_t n)
{
    int rc = sh_buf_append(out, "\"", 1);
    for (size_t i = 0; !rc && i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\')
            rc = sh_buf_printf(out, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            rc = sh_buf_printf(out, "\\u%04x", c);
        else if (c < 0x80)
            rc = sh_buf_append(out, &p[i], 1);
        else {
            size_t k = c >= 0xf0 && c < 0xf5 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 && c < 0xe0 ? 1 : 0;
            size_t j = 1;
            while (k && j <= k && i + j < n && ((unsigned char)p[i + j] & 0xc0) == 0x80)
                j++;
            if (k && j == k + 1) {
                rc = sh_buf_append(out, &p[i], k + 1);
                i += k;
            } else {
                rc = sh_buf_printf(out, "\\u%04x", c);
            }
        }
    }
    return rc ? rc : sh_buf_append(out, "\"", 1);
}

int br_deadletter_write(const char *dir, const struct br_dead_letter *dl, char *path,
                        size_t path_cap)
{
    if (mkdir(dir, 0700) && errno != EEXIST)
        return SH_EIO;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32], iso[32];
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
    strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
    char tmp[PATH_MAX];
    if (snprintf(path, path_cap, "%s/%s.%03ld-w%zu-%s.json", dir, stamp, ts.tv_nsec / 1000000,
                 dl->webhook, dl->msg_id) >= (int)path_cap ||
        snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return SH_ETOOBIG;
    struct sh_buf b;
    sh_buf_init(&b, dl->body_len + 4 * BR_DEAD_RESPONSE_MAX + 4096);
    int rc = sh_buf_printf(&b,
                           "{\"webhook\":%zu,\"webhook_key\":\"%s\",\"webhook_id\":\"%s\","
                           "\"status\":%ld,\"attempts\":%u,\"failed_at\":\"%s\","
                           "\"events\":%" PRIu32 ",\"response\":",
                           dl->webhook, dl->webhook_key, dl->msg_id, dl->status, dl->attempts, iso,
                           dl->events);
    size_t rl = dl->response_len > BR_DEAD_RESPONSE_MAX ? BR_DEAD_RESPONSE_MAX : dl->response_len;
    rc = rc ? rc : put_bytes(&b, dl->response ? dl->response : "", dl->response ? rl : 0);
    rc = rc ? rc
            : sh_buf_printf(&b, ",\"response_truncated\":%s,\"body\":",
                            dl->response_truncated || rl < dl->response_len ? "true" : "false");
    rc = rc ? rc : sh_buf_append(&b, dl->body, dl->body_len);
    rc = rc ? rc : sh_buf_append(&b, "}\n", 2);
    int fd = rc ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (!rc && fd < 0)
        rc = SH_EIO;
    if (!rc)
        rc = sh_write_all(fd, b.data, b.len);
    if (fd >= 0 && close(fd) && !rc)
        rc = SH_EIO;
    if (!rc && rename(tmp, path))
        rc = SH_EIO;
    if (rc && fd >= 0)
        unlink(tmp);
    sh_buf_free(&b);
    return rc;
}
