/*
 * lib/rand.h: a fast non-cryptographic random source (xoshiro256**) seeded from
 * getrandom, one state per thread, and exponential backoff with full jitter.
 * Not for secrets: webhook ids and signatures use OpenSSL's RAND_bytes.
 */
#ifndef SHARDHOOK_LIB_RAND_H
#define SHARDHOOK_LIB_RAND_H

#include <stdint.h>

uint64_t sh_rand_u64(void);
/* Uniform double in [0, 1). */
double sh_rand_unit(void);

/*
 * Full-jitter backoff (AWS architecture blog): a uniform delay in
 * [0, min(cap_ms, base_ms * 2^attempt)]. attempt counts from 0.
 */
uint64_t sh_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms);
/* The ceiling sh_backoff_ms draws under, for logging and tests. */
uint64_t sh_backoff_ceiling_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms);

#endif
