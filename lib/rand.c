/* lib/rand.c: thread-local xoshiro256** and full-jitter backoff. */
#include <stdint.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "lib/rand.h"

static _Thread_local uint64_t state[4];
static _Thread_local int seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static void seed(void)
{
    if (getrandom(state, sizeof(state), 0) != (ssize_t)sizeof(state)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t z = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
        for (int i = 0; i < 4; i++) { /* splitmix64 */
            z += 0x9e3779b97f4a7c15ull;
            uint64_t x = z;
            x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
            x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
            state[i] = x ^ (x >> 31);
        }
    }
    if (!(state[0] | state[1] | state[2] | state[3]))
        state[0] = 1;
    seeded = 1;
}

uint64_t sh_rand_u64(void)
{
    if (!seeded)
        seed();
    uint64_t result = rotl(state[1] * 5, 7) * 9;
    uint64_t t = state[1] << 17;
    state[2] ^= state[0];
    state[3] ^= state[1];
    state[1] ^= state[2];
    state[0] ^= state[3];
    state[2] ^= t;
    state[3] = rotl(state[3], 45);
    return result;
}

double sh_rand_unit(void)
{
    return (double)(sh_rand_u64() >> 11) * 0x1.0p-53;
}

uint64_t sh_backoff_ceiling_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms)
{
    uint64_t ceil = base_ms;
    for (unsigned i = 0; i < attempt && ceil < cap_ms; i++)
        ceil *= 2;
    return ceil < cap_ms ? ceil : cap_ms;
}

uint64_t sh_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms)
{
    uint64_t ceil = sh_backoff_ceiling_ms(attempt, base_ms, cap_ms);
    return ceil ? sh_rand_u64() % (ceil + 1) : 0;
}
