/* packread_i.h: what the files of the pack cache share (internal): packread.c (pack readers,
 * fetching, the public calls), readahead.c (following sequential readers), over framecache.h
 * (decoded frames) and packfmt.h (the pack format). */
#ifndef CASSBACKUP_PACKREAD_I_H
#define CASSBACKUP_PACKREAD_I_H

#include "framecache.h"
#include "packread.h"
#include "seekable.h"

#include <pthread.h>
#include <stdbool.h>

#define PACK_BUCKETS 256
#define MAX_IDLE_PACKS 128

/* Fetching. Frames a read needs that the cache lacks are fetched together: each run of
 * consecutive missing frames (at most RUN_MAX_FRAMES, RUN_MAX_BYTES compressed) is one
 * positional read, so one ranged GET on object storage. */
#define RUN_MAX_FRAMES 64
#define RUN_MAX_BYTES (8u << 20)
/* A fetch that failed, after the store's own retries, is the answer for this long to a read
 * of the same frames: the kernel reads a page again as soon as its read-ahead of it failed,
 * and a reader that waited on read-ahead's frames loads them again; each such read went
 * through every retry once more (a server too slow to answer held one read for twice that). */
#define FETCH_FAILURE_SECONDS 2.0

/* Read-ahead, for object storage (a local pack's reads are cheap and the kernel reads ahead on
 * it already): up to STREAMS sequential readers per pack are followed; a read that starts
 * within SEQ_SLACK of where one stopped continues it (FUSE hands a sequential reader's requests
 * to several threads, slightly out of order); from its SEQ_READS-th read on, the frames of the
 * next ra_window decoded bytes (at most half the cache) are queued, in jobs of half that (at
 * most a run: a request costs a round trip whatever its size, and few large ones were twice as
 * fast against moto_server as many small ones), for a few worker threads; when half the window
 * is read, the next half is queued. A stream taken over by another reader voids its jobs. */
#define STREAMS 4
#define SEQ_SLACK (1u << 20)
#define SEQ_READS 3
#define RA_WINDOW_MAX (32u << 20)
#define RA_WORKERS_MAX 16
#define JOBS_MAX 64
/* a pack's trailer and seek table, at most: 8 Mi entries of 12 bytes (1 TiB of 128 KiB frames) */
#define TAIL_MAX (96u << 20)

struct stream {
	uint64_t next;    /* decoded offset just after the stream's last read */
	uint32_t ra_end;  /* frames before this one are cached or queued */
	unsigned streak;  /* reads in a row that followed on (0: unused) */
	unsigned gen;     /* bumped when the stream is taken over: its queued jobs are void */
	uint64_t clock;   /* last use */
};

struct preader {
	uint64_t id;       /* unique in this cache: what its frames are filed under */
	char *relpath;     /* the pack's key: what it is found by */
	struct cb_io *io;  /* opened at the first fetch (the table may come from the disk cache) */
	uint64_t size;     /* of the pack, as its table says */
	struct seek_table *table;
	struct pack_trailer trailer; /* verified with the table */
	char dname[40];    /* disk-cache name of the pack's frames: "f-" + hex of sha256(path, table) */
	unsigned refs;
	struct stream streams[STREAMS];
	/* The last fetch that failed (FETCH_FAILURE_SECONDS): its frames, error and the store's
	 * words for it (cb_backend_last_error() of the thread that fetched); failed_err 0: none. */
	uint32_t failed_first, failed_last;
	int failed_err;
	double failed_at; /* mono_seconds() */
	char failed_why[256];
	struct preader *next;
};

struct pack_cache {
	struct cb_backend *backend; /* the store's: not ours */
	struct frame_cache fc;      /* decoded frames, filed under their pack reader's id; its mutex
				     * guards everything here */
	uint64_t next_id;           /* of the next pack reader */
	struct preader *packs[PACK_BUCKETS];
	unsigned npacks;
	uint64_t fetches, fetched_bytes, disk_hits;
	struct disk_cache *disk; /* NULL: none */
	/* read-ahead (see STREAMS); all under mu */
	unsigned ra_workers;     /* 0: none */
	size_t ra_window, ra_chunk;
	pthread_t workers[RA_WORKERS_MAX];
	unsigned nworkers;
	pthread_cond_t work;
	struct job {
		struct preader *p; /* a reference held */
		unsigned stream, gen;
		uint32_t first, n;
	} jobs[JOBS_MAX];
	unsigned job_head, njobs;
	bool stopping;
	uint64_t clock;
};

/* packread.c: makes the cache hold the frames [first, last] of p, fetching what it lacks in
 * runs; frames other threads are loading are left to them. 0, or the first error of a frame
 * loaded here. Called without the cache's mutex. */
int pr_load_frames(pack_cache *pc, struct preader *p, uint32_t first, uint32_t last, bool prefetch);

/* readahead.c */
/* Sets read-ahead up for a cache of cache_bytes: workers threads at most (0: none). */
void ra_init(pack_cache *pc, unsigned workers, size_t cache_bytes);
/* Follows a read of [off, off + len) of p, queueing the frames ahead when it continues a
 * sequential stream. Takes the cache's mutex. */
void ra_note_read(pack_cache *pc, struct preader *p, uint64_t off, size_t len);
/* Stops the workers; the jobs they had not started are dropped. */
void ra_stop(pack_cache *pc);

#endif
