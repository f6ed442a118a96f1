/* sink.h: the unit tests' way to write a stream to a file through the store's upload
 * interface (backend.h), as the writers do in a store. */
#ifndef CASSBACKUP_TEST_SINK_H
#define CASSBACKUP_TEST_SINK_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "packread.h"

#define TEST_SINK_PREFIX "/tmp/cb-sink-"

struct test_sink {
	char dir[64];
	char path[128]; /* the file once committed */
	struct cb_backend *b;
	struct cb_upload *u;
};

/* Starts an upload of a new temp file; NULL members on failure. */
static inline int test_sink_open(struct test_sink *s)
{
	snprintf(s->dir, sizeof(s->dir), TEST_SINK_PREFIX "XXXXXX");
	s->b = NULL;
	s->u = NULL;
	if (!mkdtemp(s->dir))
		return -1;
	snprintf(s->path, sizeof(s->path), "%s/stream", s->dir);
	if (cb_backend_open(s->dir, 0, NULL, &s->b) < 0)
		return -1;
	return cb_backend_upload_begin(s->b, "stream", 0, 0, &s->u);
}

/* Commits (when commit) and frees the upload; the file is at s->path then. */
static inline int test_sink_close(struct test_sink *s, int commit)
{
	int r = commit ? cb_upload_commit(s->u) : 0;
	cb_upload_free(s->u);
	cb_backend_close(s->b);
	s->u = NULL;
	s->b = NULL;
	return r;
}

static inline int test_sink_remove_one(const char *p, const struct stat *st, int type,
				       struct FTW *f)
{
	(void)st, (void)type, (void)f;
	return remove(p) < 0 ? -1 : 0;
}

/* Removes the sink directory path is in (or is), with everything in it: the stream, the
 * backend's tmp/ and whatever a test put beside them. Any path not under a sink directory
 * is left alone. */
static inline void test_sink_remove(const char *path)
{
	const size_t prefix = strlen(TEST_SINK_PREFIX);
	char dir[64];
	if (strncmp(path, TEST_SINK_PREFIX, prefix) != 0)
		return;
	size_t n = prefix + strcspn(path + prefix, "/");
	if (n >= sizeof(dir))
		return;
	memcpy(dir, path, n);
	dir[n] = '\0';
	nftw(dir, test_sink_remove_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* A pack cache over the files of dir, read-only, as a store's would read its packs. */
static inline int test_cache_open(const char *dir, size_t bytes, struct cb_backend **b,
				  pack_cache **pc)
{
	*pc = NULL;
	int r = cb_backend_open(dir, CB_BACKEND_READONLY, NULL, b);
	if (r == 0 && (r = pack_cache_new(pc, *b, bytes, 0)) < 0)
		cb_backend_close(*b);
	return r;
}

static inline void test_cache_close(struct cb_backend *b, pack_cache *pc)
{
	pack_cache_free(pc);
	cb_backend_close(b);
}

#endif
