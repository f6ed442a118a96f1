/* readahead.c: read-ahead of packs on object storage (packread_i.h): sequential readers of a
 * pack are followed, and the frames ahead of them fetched by a few worker threads. */
#include "packread_i.h"

#include <pthread.h>

void ra_init(pack_cache *pc, unsigned workers, size_t cache_bytes)
{
	if (!workers)
		return;
	pc->ra_workers = workers < RA_WORKERS_MAX ? workers : RA_WORKERS_MAX;
	pc->ra_window = cache_bytes / 2 < RA_WINDOW_MAX ? cache_bytes / 2 : RA_WINDOW_MAX;
	pc->ra_chunk = pc->ra_window / 2;
}

static void *ra_worker(void *arg)
{
	pack_cache *pc = arg;
	pthread_mutex_lock(&pc->fc.mu);
	for (;;) {
		while (!pc->stopping && !pc->njobs)
			pthread_cond_wait(&pc->work, &pc->fc.mu);
		if (pc->stopping)
			break;
		struct job j = pc->jobs[pc->job_head];
		pc->job_head = (pc->job_head + 1) % JOBS_MAX;
		pc->njobs--;
		bool live = j.p->streams[j.stream].gen == j.gen;
		pthread_mutex_unlock(&pc->fc.mu);
		if (live) /* errors are left to the reads that need the frames */
			pr_load_frames(pc, j.p, j.first, j.first + j.n - 1, true);
		pthread_mutex_lock(&pc->fc.mu);
		j.p->refs--;
	}
	pthread_mutex_unlock(&pc->fc.mu);
	return NULL;
}

/* Queues the frames of stream s's next ra_window bytes not yet queued, when less than half of
 * that window is. Called with mu held. */
static void schedule(pack_cache *pc, struct preader *p, struct stream *s)
{
	const struct seek_table *t = p->table;
	if (s->next >= t->doff[t->frames])
		return;
	uint32_t from = seek_table_frame_at(t, s->next);
	if (s->ra_end < from)
		s->ra_end = from;
	if (s->ra_end < t->frames && t->doff[s->ra_end] >= s->next + pc->ra_window / 2)
		return;
	uint64_t limit = s->next + pc->ra_window;
	while (s->ra_end < t->frames && t->doff[s->ra_end] < limit && pc->njobs < JOBS_MAX) {
		uint32_t a = s->ra_end, b = a + 1;
		while (b < t->frames && t->doff[b] < limit && b - a < RUN_MAX_FRAMES &&
		       t->doff[b] - t->doff[a] < pc->ra_chunk)
			b++;
		pc->jobs[(pc->job_head + pc->njobs++) % JOBS_MAX] =
			(struct job){.p = p, .stream = (unsigned)(s - p->streams), .gen = s->gen,
				     .first = a, .n = b - a};
		p->refs++;
		s->ra_end = b;
	}
	while (pc->nworkers < pc->ra_workers &&
	       pthread_create(&pc->workers[pc->nworkers], NULL, ra_worker, pc) == 0)
		pc->nworkers++;
	pthread_cond_broadcast(&pc->work);
}

/* Follows the reads of pack p: a read that starts near where a stream of reads stopped
 * continues it, any other takes over the least recently used stream. */
void ra_note_read(pack_cache *pc, struct preader *p, uint64_t off, size_t len)
{
	if (!pc->ra_workers || !len)
		return;
	pthread_mutex_lock(&pc->fc.mu);
	struct stream *s = NULL, *lru = &p->streams[0];
	for (unsigned i = 0; i < STREAMS && !s; i++) {
		struct stream *c = &p->streams[i];
		if (c->streak && off + SEQ_SLACK >= c->next && off <= c->next + SEQ_SLACK)
			s = c;
		else if (c->clock < lru->clock)
			lru = c;
	}
	if (!s) {
		s = lru;
		*s = (struct stream){.gen = s->gen + 1};
	}
	s->streak++;
	s->clock = ++pc->clock;
	if (off + len > s->next)
		s->next = off + len;
	if (s->streak >= SEQ_READS)
		schedule(pc, p, s);
	pthread_mutex_unlock(&pc->fc.mu);
}

/* Stops the read-ahead workers; the jobs they had not started are dropped. */
void ra_stop(pack_cache *pc)
{
	pthread_mutex_lock(&pc->fc.mu);
	pc->stopping = true;
	pthread_cond_broadcast(&pc->work);
	pthread_mutex_unlock(&pc->fc.mu);
	for (unsigned i = 0; i < pc->nworkers; i++)
		pthread_join(pc->workers[i], NULL);
	for (; pc->njobs; pc->njobs--, pc->job_head = (pc->job_head + 1) % JOBS_MAX)
		pc->jobs[pc->job_head].p->refs--;
}

