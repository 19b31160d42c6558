/*
 * bridge/sign.h: Standard Webhooks signatures (https://www.standardwebhooks.com).
 *
 * webhook-signature is "v1,<base64 HMAC-SHA256(key, id "." timestamp "." body)>",
 * the key being the base64 after "whsec_". Several keys (rotation) give several
 * signatures separated by spaces. OpenSSL does the HMAC and base64.
 */
#ifndef SHARDHOOK_BR_SIGN_H
#define SHARDHOOK_BR_SIGN_H

#include <stddef.h>
#include <stdint.h>

/*
 * Write the header value for body into out (cap bytes, NUL-terminated).
 * secrets are "whsec_<base64>" strings. Returns 0, SH_EINVAL for a secret that does
 * not decode, SH_ETOOBIG when out is too small.
 */
int br_sign(char *const *secrets, size_t n_secrets, const char *msg_id, int64_t timestamp,
            const char *body, size_t body_len, char *out, size_t cap);

/* A fresh webhook-id: "msg_" + 24 random base32 characters (OpenSSL RAND_bytes). */
int br_new_msg_id(char *out, size_t cap);

#endif
