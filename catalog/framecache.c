/* framecache.c: see framecache.h. */
#include "framecache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Frames of this many bytes or more are mapped on their own; up to FC_POOL_MAX freed ones
 * (POOL_BYTES in all) are kept, so a busy cache does not map and fault in a buffer per frame. */
#define FRAME_MAP_MIN (64u << 10)
#define POOL_BYTES (8u << 20)

void fc_init(struct frame_cache *fc, size_t budget)
{
	memset(fc, 0, sizeof(*fc));
	pthread_mutex_init(&fc->mu, NULL);
	pthread_cond_init(&fc->loaded, NULL);
	fc->budget = budget;
}

static size_t map_size(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	return (len + page - 1) / page * page;
}

/* Gives back a frame buffer (NULL is fine). Called with mu held. */
static void buf_put(struct frame_cache *fc, void *buf, size_t len)
{
	if (!buf || len < FRAME_MAP_MIN) {
		free(buf);
		return;
	}
	size_t cap = map_size(len);
	if (fc->npool < FC_POOL_MAX && fc->pool_bytes + cap <= POOL_BYTES) {
		fc->pool[fc->npool].buf = buf;
		fc->pool[fc->npool++].cap = cap;
		fc->pool_bytes += cap;
	} else {
		munmap(buf, cap);
	}
}

void fc_destroy(struct frame_cache *fc)
{
	for (struct fc_frame *f = fc->lru_head, *n; f; f = n) {
		n = f->lru_next;
		buf_put(fc, f->data, f->len);
		free(f);
	}
	for (unsigned i = 0; i < fc->npool; i++)
		munmap(fc->pool[i].buf, fc->pool[i].cap);
	pthread_cond_destroy(&fc->loaded);
	pthread_mutex_destroy(&fc->mu);
}

/* A buffer for a frame of len bytes: from the pool when one fits (at most twice the size, so
 * big buffers are not spent on small frames), else a new mapping. NULL when out of memory.
 * Takes mu. */
static void *buf_get(struct frame_cache *fc, size_t len)
{
	if (len < FRAME_MAP_MIN)
		return malloc(len ? len : 1);
	size_t want = map_size(len);
	pthread_mutex_lock(&fc->mu);
	for (unsigned i = 0; i < fc->npool; i++) {
		if (fc->pool[i].cap >= want && fc->pool[i].cap / 2 <= want) {
			void *b = fc->pool[i].buf;
			fc->pool_bytes -= fc->pool[i].cap;
			fc->pool[i] = fc->pool[--fc->npool];
			pthread_mutex_unlock(&fc->mu);
			return b;
		}
	}
	fc->stats.maps++;
	pthread_mutex_unlock(&fc->mu);
	void *b = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return b == MAP_FAILED ? NULL : b;
}

static unsigned bucket(uint64_t owner, uint32_t index)
{
	uint64_t h = owner * 0x9E3779B97F4A7C15ull ^ (uint64_t)index * 0xC2B2AE3D27D4EB4Full;
	return (unsigned)(h >> 40) % FC_BUCKETS;
}

static void lru_unlink(struct frame_cache *fc, struct fc_frame *f)
{
	if (f->lru_prev)
		f->lru_prev->lru_next = f->lru_next;
	else
		fc->lru_head = f->lru_next;
	if (f->lru_next)
		f->lru_next->lru_prev = f->lru_prev;
	else
		fc->lru_tail = f->lru_prev;
	f->lru_prev = f->lru_next = NULL;
}

static void lru_push(struct frame_cache *fc, struct fc_frame *f)
{
	f->lru_prev = NULL;
	f->lru_next = fc->lru_head;
	if (fc->lru_head)
		fc->lru_head->lru_prev = f;
	fc->lru_head = f;
	if (!fc->lru_tail)
		fc->lru_tail = f;
}

static void hash_unlink(struct frame_cache *fc, struct fc_frame *f)
{
	struct fc_frame **pp = &fc->buckets[bucket(f->owner, f->index)];
	while (*pp && *pp != f)
		pp = &(*pp)->next;
	if (*pp)
		*pp = f->next;
}

/* Frees unreferenced frames from the cold end until within budget. Called with mu held. */
static void evict(struct frame_cache *fc)
{
	struct fc_frame *f = fc->lru_tail;
	while (fc->used > fc->budget && f) {
		struct fc_frame *prev = f->lru_prev;
		if (f->refs == 0 && f->ready) {
			hash_unlink(fc, f);
			lru_unlink(fc, f);
			fc->used -= f->len;
			fc->stats.evictions++;
			buf_put(fc, f->data, f->len);
			free(f);
		}
		f = prev;
	}
}

struct fc_frame *fc_find_locked(struct frame_cache *fc, uint64_t owner, uint32_t index)
{
	struct fc_frame *f = fc->buckets[bucket(owner, index)];
	while (f && !(f->owner == owner && f->index == index))
		f = f->next;
	return f;
}

struct fc_frame *fc_claim_locked(struct frame_cache *fc, uint64_t owner, uint32_t index,
				 size_t len, bool prefetch)
{
	struct fc_frame *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	*f = (struct fc_frame){.owner = owner, .index = index, .refs = 1, .prefetched = prefetch,
			       .len = len};
	unsigned b = bucket(owner, index);
	f->next = fc->buckets[b];
	fc->buckets[b] = f;
	fc->stats.misses++;
	return f;
}

int fc_fill(struct frame_cache *fc, struct fc_frame *f)
{
	f->data = buf_get(fc, f->len);
	return f->data ? 0 : -ENOMEM;
}

void fc_finish(struct frame_cache *fc, struct fc_frame *f, int r)
{
	pthread_mutex_lock(&fc->mu);
	if (r < 0) {
		hash_unlink(fc, f);
		buf_put(fc, f->data, f->len);
		f->data = NULL;
		f->err = r;
	} else {
		f->ready = true;
		lru_push(fc, f);
		fc->used += f->len;
		evict(fc);
	}
	pthread_cond_broadcast(&fc->loaded);
	pthread_mutex_unlock(&fc->mu);
}

int fc_wait_locked(struct frame_cache *fc, struct fc_frame *f)
{
	while (!f->ready && f->err == 0)
		pthread_cond_wait(&fc->loaded, &fc->mu);
	if (f->err == 0) {
		fc->stats.hits++;
		lru_unlink(fc, f);
		lru_push(fc, f);
	}
	return f->err;
}

void fc_release_locked(struct frame_cache *fc, struct fc_frame *f)
{
	if (--f->refs == 0) {
		if (f->err)
			free(f); /* out of the cache since its loading failed */
		else if (fc->used > fc->budget)
			evict(fc);
	}
}

void fc_release(struct frame_cache *fc, struct fc_frame *f)
{
	pthread_mutex_lock(&fc->mu);
	fc_release_locked(fc, f);
	pthread_mutex_unlock(&fc->mu);
}

void fc_get_stats(struct frame_cache *fc, struct fc_stats *st)
{
	pthread_mutex_lock(&fc->mu);
	*st = fc->stats;
	st->bytes = fc->used;
	pthread_mutex_unlock(&fc->mu);
}
