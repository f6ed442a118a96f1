/* ratelimit.c: a shared byte rate (see ratelimit.h). */
#include "ratelimit.h"

#include <errno.h>
#include <time.h>

void rate_limit_init(struct rate_limit *rl, uint64_t bytes_per_second)
{
	pthread_mutex_init(&rl->lock, NULL);
	rl->bytes_per_second = bytes_per_second;
	rl->next_ns = 0;
}

void rate_limit_destroy(struct rate_limit *rl)
{
	pthread_mutex_destroy(&rl->lock);
}

uint64_t rate_limit_reserve(struct rate_limit *rl, uint64_t now_ns, size_t n)
{
	if (!rl->bytes_per_second)
		return 0;
	/* n / rate seconds, in ns; n < 2^44 and 1e9 < 2^30 keep the product in 64 bits */
	uint64_t cost = (uint64_t)n * 1000000000ull / rl->bytes_per_second;
	pthread_mutex_lock(&rl->lock);
	uint64_t floor = now_ns > RATE_BURST_NS ? now_ns - RATE_BURST_NS : 0;
	if (rl->next_ns < floor)
		rl->next_ns = floor; /* idle: lend at most one burst */
	rl->next_ns += cost;
	uint64_t due = rl->next_ns;
	pthread_mutex_unlock(&rl->lock);
	return due > now_ns ? due - now_ns : 0;
}

void rate_limit_take(struct rate_limit *rl, size_t n)
{
	if (!rl->bytes_per_second)
		return;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	uint64_t wait = rate_limit_reserve(rl, (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec, n);
	struct timespec ts = {.tv_sec = (time_t)(wait / 1000000000ull), .tv_nsec = (long)(wait % 1000000000ull)};
	while (wait && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}
