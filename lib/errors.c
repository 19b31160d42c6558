/* lib/errors.c: messages for the SH_E* codes of lib/errors.h. */
#include "lib/errors.h"

const char *sh_strerror(int err)
{
    switch (err) {
    case SH_OK:
        return "ok";
#define SH_ERR_CASE_(name, msg)                                                                    \
    case SH_E##name:                                                                               \
        return msg;
        SH_ERRNO_MAP(SH_ERR_CASE_)
#undef SH_ERR_CASE_
    default:
        return "unknown error";
    }
}
