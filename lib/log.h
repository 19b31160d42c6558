/*
 * lib/log.h: one-line logging to stderr, logfmt (default) or JSON.
 *
 * Lines look like `ts=2026-11-23T13:45:00.123Z level=info msg="shard ready" shard=3`, or with
 * the JSON format `{"ts":"2026-11-23T13:45:00.123Z","level":"info","msg":"shard ready",
 * "shard":3}`. Callers pass the fields after `level=` as a printf format in logfmt
 * (`key=value key="text"`); the macros skip the formatting entirely below the configured
 * level. The writer re-reads the formatted fields and writes them escaped, so a value that
 * holds quotes, backslashes or newlines cannot break the line (see sh_log_render). Registered
 * secrets (bot token, webhook secrets, API token) are replaced by `[redacted]` in every line,
 * as a last line of defence: callers still must not pass them.
 */
#ifndef SHARDHOOK_LIB_LOG_H
#define SHARDHOOK_LIB_LOG_H

enum sh_log_level { SH_LOG_DEBUG = 0, SH_LOG_INFO, SH_LOG_WARN, SH_LOG_ERROR, SH_LOG_OFF };

enum sh_log_format { SH_LOG_LOGFMT = 0, SH_LOG_JSON };

/* Both may change while threads log (a config reload): plain atomic stores. */
extern _Atomic int sh_log_level;
extern _Atomic int sh_log_format;

void sh_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parse "debug|info|warn|error|off"; returns -1 when unknown. */
int sh_log_level_parse(const char *name);
/* Parse "logfmt|json"; returns -1 when unknown. */
int sh_log_format_parse(const char *name);
/*
 * Render one line (no newline) into out (always NUL-terminated, cut at outlen - 1 bytes).
 * fields is what a caller formatted: `key=value` pairs separated by spaces, where a key is
 * [A-Za-z0-9_.-]+; a value either runs to the next ` key=` (or the end), or starts with a
 * quote and runs to the last quote before the next ` key=` (or the end), so quotes inside
 * need no escaping by the caller. Text before the first key goes under "msg". Output values
 * have `"`, `\` and control characters escaped as in JSON strings; invalid UTF-8 becomes
 * U+FFFD. logfmt quotes values that were quoted or need it; JSON writes plain decimal
 * numbers as numbers and everything else as strings. Returns the length written.
 */
size_t sh_log_render(int format, const char *ts, const char *level, const char *fields, char *out,
                     size_t outlen);
/* Remember a secret to scrub from every later line (copied; strings under 4 bytes ignored). */
void sh_log_add_secret(const char *secret);
void sh_log_clear_secrets(void);

#define SH_LOG_AT_(lvl, ...)                                                                       \
    do {                                                                                           \
        if ((lvl) >= sh_log_level)                                                                 \
            sh_log_write((lvl), __VA_ARGS__);                                                      \
    } while (0)
#define log_debug(...) SH_LOG_AT_(SH_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) SH_LOG_AT_(SH_LOG_INFO, __VA_ARGS__)
#define log_warn(...) SH_LOG_AT_(SH_LOG_WARN, __VA_ARGS__)
#define log_error(...) SH_LOG_AT_(SH_LOG_ERROR, __VA_ARGS__)

/*
 * A repeated message logged once, then as a count: a `struct sh_log_limit` (one per call site
 * or per thing that can fail, zero-initialised or SH_LOG_LIMIT_INIT) lets the first line through,
 * then at most one line per SH_LOG_LIMIT_MS; each line that gets through after others were held
 * back ends with ` suppressed=N`, the number held back since the last one. Thread-safe.
 */
#define SH_LOG_LIMIT_MS 5000
struct sh_log_limit {
    _Atomic unsigned long long next_ms;
    _Atomic unsigned long long held;
};
#define SH_LOG_LIMIT_INIT                                                                          \
    {                                                                                              \
        0, 0                                                                                       \
    }

/* 1 when a line may be written now (and *held is how many were held back before it), else 0. */
int sh_log_limit_pass(struct sh_log_limit *lim, unsigned long long *held);
void sh_log_write_limited(int level, struct sh_log_limit *lim, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define SH_LOG_LIMITED_AT_(lvl, lim, ...)                                                          \
    do {                                                                                           \
        if ((lvl) >= sh_log_level)                                                                 \
            sh_log_write_limited((lvl), (lim), __VA_ARGS__);                                       \
    } while (0)
#define log_warn_limited(lim, ...) SH_LOG_LIMITED_AT_(SH_LOG_WARN, lim, __VA_ARGS__)
#define log_error_limited(lim, ...) SH_LOG_LIMITED_AT_(SH_LOG_ERROR, lim, __VA_ARGS__)

/* A state that cannot happen: report file and line, then abort (haproxy's BUG_ON). */
#define SH_BUG_ON(cond)                                                                            \
    do {                                                                                           \
        if (cond) {                                                                                \
            sh_log_write(SH_LOG_ERROR, "msg=\"bug\" cond=\"%s\" at=%s:%d", #cond, __FILE__,        \
                         __LINE__);                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
