/* test_framecache.c: the frame cache's buffer pool. */
#include "check.h"
#include "framecache.h"

#include <string.h>

#define FRAME (128u << 10)
#define PER_REQUEST 9 /* frames of 128 KiB a 1 MiB read touches */
#define IN_FLIGHT 4    /* requests the kernel's readahead has the mount answer at once */
#define HELD (PER_REQUEST * IN_FLIGHT)

/* IN_FLIGHT requests of a sequential reader answered at once: each claims and loads the next
 * PER_REQUEST frames and holds them while it answers; then all release theirs. */
static void requests_in_flight(struct frame_cache *fc, uint32_t *next)
{
	struct fc_frame *held[HELD];
	for (unsigned k = 0; k < HELD; k++) {
		pthread_mutex_lock(&fc->mu);
		held[k] = fc_claim_locked(fc, 1, (*next)++, FRAME, false);
		pthread_mutex_unlock(&fc->mu);
		CHECK(held[k] && fc_fill(fc, held[k]) == 0);
		memset(held[k]->data, 0x5a, FRAME);
		fc_finish(fc, held[k], 0);
	}
	for (unsigned k = 0; k < HELD; k++)
		fc_release(fc, held[k]);
}

/* A sequential read through a 2 MiB cache maps its buffers once: evicted frames' buffers are
 * reused, not unmapped and mapped again per request (the mount spent a third of its system time
 * on that, 2.5 mmap/munmap pairs per 1 MiB read). */
static void test_pool_reuses_buffers(void)
{
	struct frame_cache fc;
	fc_init(&fc, 2u << 20);
	uint32_t next = 0;
	for (unsigned i = 0; i < 100; i++)
		requests_in_flight(&fc, &next);
	struct fc_stats st;
	fc_get_stats(&fc, &st);
	CHECK(st.evictions >= 100 * HELD - HELD);
	CHECK(st.maps <= 2 * HELD);
	if (st.maps > 2 * HELD)
		fprintf(stderr, "%llu buffers mapped for %u frames\n", (unsigned long long)st.maps,
			100 * HELD);
	fc_destroy(&fc);
}

int main(void)
{
	test_pool_reuses_buffers();
	return failures ? 1 : 0;
}
