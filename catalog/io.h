/* io.h: the one small interface packs are read through.
 *
 * Readers of packs never touch file descriptors directly, so that a pack can later be backed by
 * ranged GETs against object storage: an implementation only needs positional reads and a size.
 */
#ifndef CASSBACKUP_IO_H
#define CASSBACKUP_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cb_io;

struct cb_io_ops {
	/* Reads up to len bytes at off; returns bytes read (short only at end) or -errno. */
	ssize_t (*pread)(struct cb_io *io, void *buf, size_t len, uint64_t off);
	void (*close)(struct cb_io *io);
	/* optional: [off, off + len) was read and will not be read again soon (a local file
	 * drops those pages from the page cache, which would otherwise keep the pack's bytes
	 * beside the decoded ones the reader keeps) */
	void (*done)(struct cb_io *io, uint64_t off, size_t len);
};

struct cb_io {
	const struct cb_io_ops *ops;
	uint64_t size;
};

/* Opens a local file for reading. 0 or -errno; *out is owned by the caller (cb_io_close). */
int cb_io_open_file(const char *path, struct cb_io **out);

/* Takes over an open file descriptor (closed by cb_io_close, or by the caller on failure). */
int cb_io_open_fd(int fd, struct cb_io **out);

static inline ssize_t cb_io_pread(struct cb_io *io, void *buf, size_t len, uint64_t off)
{
	return io->ops->pread(io, buf, len, off);
}

/* Says that [off, off + len) was read and is not needed again soon (see done above). */
static inline void cb_io_done(struct cb_io *io, uint64_t off, size_t len)
{
	if (io->ops->done)
		io->ops->done(io, off, len);
}

/* Accepts NULL. */
void cb_io_close(struct cb_io *io);

#endif
