/* bridge/sign.c: HMAC-SHA256 Standard Webhooks signatures and message ids (OpenSSL). */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bridge/sign.h"
#include "lib/errors.h"

#define MAX_KEY 256

int br_sign(char *const *secrets, size_t n_secrets, const char *msg_id, int64_t timestamp,
            const char *body, size_t body_len, char *out, size_t cap)
{
    size_t o = 0;
    if (cap)
        out[0] = '\0';
    char ts[32];
    int tsl = snprintf(ts, sizeof(ts), "%" PRId64, timestamp);
    for (size_t i = 0; i < n_secrets; i++) {
        const char *b64 = secrets[i];
        if (!strncmp(b64, "whsec_", 6))
            b64 += 6;
        size_t bl = strlen(b64);
        unsigned char key[MAX_KEY * 2];
        if (bl == 0 || bl > MAX_KEY * 4 / 3 + 4 || bl % 4)
            return SH_EINVAL;
        int kl = EVP_DecodeBlock(key, (const unsigned char *)b64, (int)bl);
        if (kl < 0)
            return SH_EINVAL;
        kl -= (bl >= 1 && b64[bl - 1] == '=') + (bl >= 2 && b64[bl - 2] == '=');
        if (kl <= 0)
            return SH_EINVAL;
        unsigned char mac[EVP_MAX_MD_SIZE];
        size_t ml = 0;
        char digest[] = "SHA256";
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
            OSSL_PARAM_construct_end(),
        };
        EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
        EVP_MAC_CTX *h = m ? EVP_MAC_CTX_new(m) : NULL;
        int ok = h && EVP_MAC_init(h, key, (size_t)kl, params) &&
                 EVP_MAC_update(h, (const unsigned char *)msg_id, strlen(msg_id)) &&
                 EVP_MAC_update(h, (const unsigned char *)".", 1) &&
                 EVP_MAC_update(h, (const unsigned char *)ts, (size_t)tsl) &&
                 EVP_MAC_update(h, (const unsigned char *)".", 1) &&
                 EVP_MAC_update(h, (const unsigned char *)body, body_len) &&
                 EVP_MAC_final(h, mac, &ml, sizeof(mac));
        EVP_MAC_CTX_free(h);
        EVP_MAC_free(m);
        OPENSSL_cleanse(key, sizeof(key));
        if (!ok)
            return SH_EINVAL;
        unsigned char enc[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
        int el = EVP_EncodeBlock(enc, mac, (int)ml);
        if (o + (size_t)el + 5 >= cap)
            return SH_ETOOBIG;
        o += (size_t)snprintf(out + o, cap - o, "%sv1,%s", o ? " " : "", enc);
    }
    return SH_OK;
}

int br_new_msg_id(char *out, size_t cap)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    unsigned char rnd[24];
    if (cap < 4 + sizeof(rnd) + 1 || RAND_bytes(rnd, sizeof(rnd)) != 1)
        return SH_EINVAL;
    memcpy(out, "msg_", 4);
    for (size_t i = 0; i < sizeof(rnd); i++)
        out[4 + i] = alphabet[rnd[i] & 31];
    out[4 + sizeof(rnd)] = '\0';
    return SH_OK;
}
