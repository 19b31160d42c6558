/* lib/clock.h: monotonic and wall clocks in milliseconds. Owns no state. */
#ifndef SHARDHOOK_LIB_CLOCK_H
#define SHARDHOOK_LIB_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic milliseconds: for intervals, deadlines and latency. */
static inline uint64_t sh_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Wall-clock milliseconds since the epoch: for timestamps users read. */
static inline uint64_t sh_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#endif
