/* ratelimit.h: one byte rate shared by every transfer of a client.
 *
 * `--limit-upload 50M` means 50 MB/s over all of a command's requests together, not per
 * connection: each transfer reserves the bytes it moves, in arrival order, and waits until
 * the rate allows them. An idle limiter lends at most RATE_BURST_NS worth of rate, so a pause
 * does not buy a burst later.
 */
#ifndef CASSBACKUP_RATELIMIT_H
#define CASSBACKUP_RATELIMIT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define RATE_BURST_NS 100000000ull /* 0.1 s */

struct rate_limit {
	pthread_mutex_t lock;
	uint64_t bytes_per_second; /* 0: unlimited */
	uint64_t next_ns;          /* when the bytes reserved so far have been paid for */
};

void rate_limit_init(struct rate_limit *rl, uint64_t bytes_per_second);
void rate_limit_destroy(struct rate_limit *rl);

/* Reserves n bytes at time now_ns (CLOCK_MONOTONIC) and returns how long the caller must wait
 * before moving them, in ns (0: at once). The pure step of rate_limit_take, for tests. */
uint64_t rate_limit_reserve(struct rate_limit *rl, uint64_t now_ns, size_t n);

/* Reserves n bytes and sleeps as long as the rate asks. No-op when unlimited. */
void rate_limit_take(struct rate_limit *rl, size_t n);

#endif
