/* framecache.h: a bounded cache of decoded frames, shared by threads, that knows nothing of
 * packs (squashfuse's cache.c is the model). A frame is named by (owner, index): an owner is any
 * 64-bit number its user gives (packread.c: one per pack reader, never reused).
 *
 * A frame is LOADING from its claim until fc_finish: its claimer fills data (len bytes, from
 * fc_fill) and others who want it wait (fc_wait_locked). Ready frames are kept, the most
 * recently used first, while their bytes fit the budget; a frame with references is kept past
 * it. Decoded frames of FRAME_MAP_MIN bytes or more are mapped on their own (mmap), outside
 * malloc's arenas, so that an evicted frame's memory goes back to the system instead of
 * fragmenting a heap that never shrinks; a few freed buffers are kept for reuse.
 *
 * Locking: one mutex, fc->mu. The *_locked calls need it held; the others take it. Its user may
 * hold it around several calls, and keep state of its own under it.
 */
#ifndef CASSBACKUP_FRAMECACHE_H
#define CASSBACKUP_FRAMECACHE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FC_BUCKETS 4096
/* Freed frame buffers kept for reuse: enough for a cache's worth of default (128 KiB) frames
 * within POOL_BYTES, since readers pin a request's frames (9 for 1 MiB) while it is answered and
 * those are then evicted together: a pool of 8 unmapped one and mapped (faulted in, zeroed)
 * another for every request of a sequential read. */
#define FC_POOL_MAX 64

struct fc_frame {
	uint64_t owner;
	uint32_t index;
	bool ready;      /* false: loading */
	bool prefetched; /* claimed by read-ahead: a reader that finds it failed loads it again */
	unsigned refs;
	int err;         /* set when loading failed; the entry is then out of the cache */
	unsigned char *data;
	size_t len;
	struct fc_frame *next;                   /* hash chain */
	struct fc_frame *lru_prev, *lru_next;    /* most recent at head */
};

struct fc_stats {
	uint64_t hits, misses, evictions;
	uint64_t maps; /* frame buffers mapped anew (not taken from the pool) */
	size_t bytes; /* of ready frames held */
};

struct frame_cache {
	pthread_mutex_t mu;
	pthread_cond_t loaded;
	size_t budget, used;
	struct fc_frame *buckets[FC_BUCKETS];
	struct fc_frame *lru_head, *lru_tail;
	struct {
		void *buf;
		size_t cap;
	} pool[FC_POOL_MAX]; /* freed frame buffers kept for reuse */
	unsigned npool;
	size_t pool_bytes;
	struct fc_stats stats;
};

void fc_init(struct frame_cache *fc, size_t budget);
/* Frees every frame (none may be in use) and the pool. */
void fc_destroy(struct frame_cache *fc);

/* The frame (owner, index), loading or ready, or NULL. */
struct fc_frame *fc_find_locked(struct frame_cache *fc, uint64_t owner, uint32_t index);

/* A new LOADING frame (owner, index) of len bytes, whose one reference is the caller's; NULL
 * when out of memory. The caller checked it is not there. */
struct fc_frame *fc_claim_locked(struct frame_cache *fc, uint64_t owner, uint32_t index,
				 size_t len, bool prefetch);

/* Gives a claimed frame its buffer (f->len bytes). -ENOMEM. Takes mu. */
int fc_fill(struct frame_cache *fc, struct fc_frame *f);

/* Ends the loading of f: ready (r == 0) or failed (out of the cache, f->err set); wakes those
 * waiting for it. The claimer's reference stays. Takes mu. */
void fc_finish(struct frame_cache *fc, struct fc_frame *f, int r);

/* Waits, holding a reference to f, while it is loading; its error (0: ready). A ready frame
 * counts as a hit and becomes the most recently used. */
int fc_wait_locked(struct frame_cache *fc, struct fc_frame *f);

/* Drops a reference to f (ready or failed). */
void fc_release_locked(struct frame_cache *fc, struct fc_frame *f);
void fc_release(struct frame_cache *fc, struct fc_frame *f);

void fc_get_stats(struct frame_cache *fc, struct fc_stats *st);

#endif
