/* io.c: local-file implementation of struct cb_io. */
#include "io.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

struct file_io {
	struct cb_io io;
	int fd;
};

static ssize_t file_pread(struct cb_io *io, void *buf, size_t len, uint64_t off)
{
	struct file_io *f = (struct file_io *)io;
	return pread_full(f->fd, buf, len, (off_t)off);
}

static void file_close(struct cb_io *io)
{
	struct file_io *f = (struct file_io *)io;
	close(f->fd);
	free(f);
}

static void file_done(struct cb_io *io, uint64_t off, size_t len)
{
	posix_fadvise(((struct file_io *)io)->fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
}

static const struct cb_io_ops file_ops = {
	.pread = file_pread,
	.close = file_close,
	.done = file_done,
};

int cb_io_open_fd(int fd, struct cb_io **out)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	struct file_io *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->io.ops = &file_ops;
	f->io.size = (uint64_t)st.st_size;
	f->fd = fd;
	*out = &f->io;
	return 0;
}

int cb_io_open_file(const char *path, struct cb_io **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = cb_io_open_fd(fd, out);
	if (r < 0)
		close(fd);
	return r;
}

void cb_io_close(struct cb_io *io)
{
	if (io)
		io->ops->close(io);
}
