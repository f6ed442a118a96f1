/* Unit tests of the shared byte rate (catalog/ratelimit.c), on a clock the test sets: the wait
 * it asks for, not the time it takes, so they hold on a loaded machine. */
#include "ratelimit.h"

#include <stdio.h>

#include "check.h"

#define S 1000000000ull
#define MS 1000000ull

static void test_unlimited(void)
{
	struct rate_limit rl;
	rate_limit_init(&rl, 0);
	CHECK(rate_limit_reserve(&rl, 5 * S, 1u << 30) == 0);
	rate_limit_take(&rl, 1u << 30); /* returns at once */
	rate_limit_destroy(&rl);
}

/* Transfers sharing one limiter queue behind each other: four 1 MB reservations at 2 MB/s,
 * made at the same moment, are due 0.5, 1, 1.5 and 2 s later (minus the 0.1 s burst). */
static void test_shared_by_transfers(void)
{
	struct rate_limit rl;
	rate_limit_init(&rl, 2000000);
	uint64_t now = 10 * S;
	CHECK(rate_limit_reserve(&rl, now, 1000000) == 400 * MS);
	CHECK(rate_limit_reserve(&rl, now, 1000000) == 900 * MS);
	CHECK(rate_limit_reserve(&rl, now, 1000000) == 1400 * MS);
	CHECK(rate_limit_reserve(&rl, now, 1000000) == 1900 * MS);
	/* a caller 1 s later queues behind the same reservations: due at 2.4 s + 0.5 s */
	CHECK(rate_limit_reserve(&rl, now + 1 * S, 1000000) == 1400 * MS);
	rate_limit_destroy(&rl);
}

/* A pause does not buy a burst: after 60 s idle, only 0.1 s worth moves without a wait. */
static void test_idle_lends_one_burst(void)
{
	struct rate_limit rl;
	rate_limit_init(&rl, 1000000);
	CHECK(rate_limit_reserve(&rl, 1 * S, 1000) == 0);
	uint64_t later = 61 * S;
	CHECK(rate_limit_reserve(&rl, later, 100000) == 0);      /* the burst */
	CHECK(rate_limit_reserve(&rl, later, 100000) == 100 * MS); /* then the rate */
	rate_limit_destroy(&rl);
}

/* Steady small chunks settle at the rate: 1,000 chunks of 16 KiB at 16 MiB/s, each reserved
 * when the previous one was allowed, end 1 s (less the burst) after the first. */
static void test_steady_rate(void)
{
	struct rate_limit rl;
	rate_limit_init(&rl, 16384000);
	uint64_t now = 3 * S;
	for (int i = 0; i < 1000; i++)
		now += rate_limit_reserve(&rl, now, 16384);
	CHECK(now == 3 * S + 1 * S - 100 * MS);
	rate_limit_destroy(&rl);
}

int main(void)
{
	test_unlimited();
	test_shared_by_transfers();
	test_idle_lends_one_burst();
	test_steady_rate();
	if (failures) {
		fprintf(stderr, "test_ratelimit: %d checks failed\n", failures);
		return 1;
	}
	printf("test_ratelimit: all checks passed\n");
	return 0;
}
