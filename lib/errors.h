/*
 * lib/errors.h: the one list of error codes every room returns.
 *
 * Fallible calls return int: 0 on success, a negative SH_E* code on failure.
 * The X-macro yields both the enum and the message, so they cannot drift.
 * Owns nothing at run time.
 */
#ifndef SHARDHOOK_LIB_ERRORS_H
#define SHARDHOOK_LIB_ERRORS_H

#define SH_ERRNO_MAP(X)                                                                            \
    X(NOMEM, "out of memory")                                                                      \
    X(INVAL, "invalid argument")                                                                   \
    X(TOOBIG, "exceeds its size cap")                                                              \
    X(CORRUPT, "corrupt compressed stream")                                                        \
    X(PARSE, "malformed payload")                                                                  \
    X(IO, "input/output error")                                                                    \
    X(NET, "network error")                                                                        \
    X(HTTP, "unexpected HTTP status")                                                              \
    X(AUTH, "authentication failed")                                                               \
    X(AGAIN, "try again later")                                                                    \
    X(RATELIMIT, "rate limited")                                                                   \
    X(CLOSED, "closed")                                                                            \
    X(NOTFOUND, "not found")                                                                       \
    X(CONFIG, "invalid configuration")                                                             \
    X(UNSYNCED, "written, but not synced to disk")                                                 \
    X(EXIST, "already exists")                                                                     \
    X(TIMEDOUT, "timed out")                                                                       \
    X(FENCED, "fenced out: another node owns it now")

enum sh_err {
    SH_OK = 0,
    SH_ERR_BASE_ = -1000,
#define SH_ERR_ENUM_(name, msg) SH_E##name,
    SH_ERRNO_MAP(SH_ERR_ENUM_)
#undef SH_ERR_ENUM_
        SH_ERR_END_
};

/* Message for a code returned by any shardhook call; never NULL. */
const char *sh_strerror(int err);

#endif
