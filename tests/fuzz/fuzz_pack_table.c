/* libFuzzer target: the end of a pack as read from a store: seek table, trailer, index member
 * (pack.h). Whatever the bytes, reading either fails cleanly or yields a table whose frames
 * tile the file and an index whose blobs start at frames within the stream. */
#include "packread.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

struct mem_io {
	struct cb_io io;
	const unsigned char *data;
};

static ssize_t mem_pread(struct cb_io *io, void *buf, size_t len, uint64_t off)
{
	struct mem_io *m = (struct mem_io *)io;
	if (off >= io->size)
		return 0;
	if (len > io->size - off)
		len = (size_t)(io->size - off);
	memcpy(buf, m->data + off, len);
	return (ssize_t)len;
}

static void mem_close(struct cb_io *io) { (void)io; }

static const struct cb_io_ops mem_ops = {.pread = mem_pread, .close = mem_close};

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct mem_io m = {{&mem_ops, size}, data};
	struct seek_table *t = NULL;
	struct pack_trailer tr;
	if (pack_table_read(&m.io, &t, &tr) < 0) {
		if (t)
			abort(); /* a refused table is never handed out */
		return 0;
	}
	if (t->coff[t->frames] > size)
		abort();
	struct pack_index pi;
	char err[256] = "";
	if (pack_index_read(&m.io, t, &tr, &pi, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < pi.nblobs; i++)
			if (pi.blobs[i].offset > t->doff[t->frames])
				abort();
		pack_index_free(&pi);
	} else if (!err[0]) {
		abort();
	}
	seek_table_free(t);
	return 0;
}
