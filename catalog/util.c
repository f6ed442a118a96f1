/* util.c: see util.h. */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

static int sb_reserve(struct strbuf *sb, size_t extra)
{
	if (sb->len + extra + 1 <= sb->cap)
		return 0;
	size_t cap = sb->cap ? sb->cap : 256;
	while (cap < sb->len + extra + 1)
		cap *= 2;
	char *p = realloc(sb->buf, cap);
	if (!p)
		return -ENOMEM;
	sb->buf = p;
	sb->cap = cap;
	return 0;
}

int sb_append(struct strbuf *sb, const void *data, size_t len)
{
	int r = sb_reserve(sb, len);
	if (r < 0)
		return r;
	memcpy(sb->buf + sb->len, data, len);
	sb->len += len;
	sb->buf[sb->len] = '\0';
	return 0;
}

int sb_puts(struct strbuf *sb, const char *s)
{
	return sb_append(sb, s, strlen(s));
}

int sb_printf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	int r = sb_reserve(sb, (size_t)n);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
	return 0;
}

int sb_json_str(struct strbuf *sb, const char *s)
{
	int r = sb_append(sb, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; r == 0 && *p; p++) {
		switch (*p) {
		case '"': r = sb_append(sb, "\\\"", 2); break;
		case '\\': r = sb_append(sb, "\\\\", 2); break;
		case '\n': r = sb_append(sb, "\\n", 2); break;
		case '\r': r = sb_append(sb, "\\r", 2); break;
		case '\t': r = sb_append(sb, "\\t", 2); break;
		default:
			if (*p < 0x20)
				r = sb_printf(sb, "\\u%04x", *p);
			else
				r = sb_append(sb, p, 1);
		}
	}
	return r < 0 ? r : sb_append(sb, "\"", 1);
}

void sb_free(struct strbuf *sb)
{
	free(sb->buf);
	*sb = (struct strbuf){0};
}

int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t pread_full(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

void *direct_chunk_alloc(size_t len)
{
	void *p = NULL;
	return posix_memalign(&p, CB_DIRECT_ALIGN, len) == 0 ? p : NULL;
}

bool read_once_begin(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0)
		return true;
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	return false;
}

/* pread_full for an O_DIRECT fd: each read after the first starts where the last one ended,
 * so only while it ended on a block (one that ends elsewhere ended at the end of the file). */
static ssize_t pread_direct(int fd, char *buf, size_t len, off_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, off + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
		if (n == 0 || n % CB_DIRECT_ALIGN)
			break;
	}
	return (ssize_t)done;
}

ssize_t read_once_chunk(int fd, bool *direct, void *buf, size_t len, off_t off)
{
	ssize_t n = *direct ? pread_direct(fd, buf, len, off) : pread_full(fd, buf, len, off);
	if (n == -EINVAL && *direct) {
		int fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_DIRECT) < 0)
			return -errno;
		*direct = false;
		posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
		n = pread_full(fd, buf, len, off);
	}
	return n;
}

/* mkdir -p path with mode 0700 for what it creates. */
static int make_dirs_private(const char *path)
{
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	int r = 0;
	for (char *q = p + 1; r == 0; q++) {
		if (*q != '/' && *q)
			continue;
		char c = *q;
		*q = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			r = -errno;
		*q = c;
		if (!c)
			break;
	}
	free(p);
	return r;
}

int open_private_dir(const char *path, bool parents, struct strbuf *err)
{
	int r = parents ? make_dirs_private(path) : mkdir(path, 0700) < 0 && errno != EEXIST ? -errno : 0;
	if (r < 0) {
		sb_printf(err, "cannot create %s: %s", path, strerror(-r));
		return r;
	}
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		sb_printf(err, "cannot open %s: %s", path, strerror(-r));
		return r;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		sb_printf(err, "%s: %s", path, strerror(-r));
		close(fd);
		return r;
	}
	if (st.st_uid != geteuid() || (st.st_mode & (S_ISVTX | 022))) {
		sb_printf(err, "%s: not this user's own directory (owned by another, or writable by "
			  "others): give it a directory of its own", path);
		close(fd);
		return -EPERM;
	}
	return fd;
}

int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

void hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hex_decode(const char *in, unsigned char *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(in[2 * i]), lo = hi < 0 ? -1 : hexval(in[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return in[2 * n] == '\0' ? 0 : -EINVAL;
}

int read_small_file(const char *path, size_t max, char **out, size_t *len)
{
	/* O_NONBLOCK: a FIFO is refused below (-EINVAL), not waited on for a writer */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	struct stat st;
	int r = 0;
	char *buf = NULL;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		r = -EFBIG;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	ssize_t n = pread_full(fd, buf, (size_t)st.st_size, 0);
	if (n < 0) {
		r = (int)n;
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	buf = NULL;
	if (len)
		*len = (size_t)n;
out:
	free(buf);
	close(fd);
	return r;
}

int first_repeat(const void *base, size_t n, size_t size,
			int (*cmp)(const void *, const void *), const void **twice)
{
	const void **v = malloc((n ? n : 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		v[i] = (const char *)base + i * size;
	qsort(v, n, sizeof(*v), cmp);
	*twice = NULL;
	for (size_t i = 1; i < n && !*twice; i++)
		if (!cmp(&v[i - 1], &v[i]))
			*twice = v[i];
	free(v);
	return *twice != NULL;
}

void format_bytes(uint64_t bytes, char *out, size_t outlen)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)bytes;
	unsigned u = 0;
	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, outlen, "%llu B", (unsigned long long)bytes);
	else
		snprintf(out, outlen, "%.1f %s", v, units[u]);
}

void format_time_utc(int64_t ns, char *out, size_t outlen)
{
	time_t t = (time_t)(ns / 1000000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double mono_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int ptrv_push(char ***v, size_t *n, char *s)
{
	char **p = realloc(*v, (*n + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	*v = p;
	p[(*n)++] = s;
	return 0;
}

bool name_is_component(const char *s)
{
	if (!s || !*s || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	return !strchr(s, '/') && strlen(s) <= 255;
}

bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned n, c = *p;
		uint32_t cp;
		if (c < 0x80) {
			p++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			n = 1, cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2, cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3, cp = c & 0x07;
		} else {
			return false;
		}
		for (unsigned i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		/* no overlong forms, no surrogates, nothing past U+10FFFF */
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += n + 1;
	}
	return true;
}

/* --- parsers: the command line's and the mount's -o options' --- */

int parse_digits(const char **p, uint64_t *v)
{
	const char *s = *p;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	uint64_t x = 0;
	int r = 0;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');
		if (x > (UINT64_MAX - d) / 10)
			r = -ERANGE;
		x = x * 10 + d;
	}
	*v = x;
	*p = s;
	return r;
}

int parse_size(const char *s, uint64_t *out, struct strbuf *err)
{
	static const struct { const char *unit; unsigned shift; } units[] = {
		{"", 0}, {"b", 0}, {"k", 10}, {"kib", 10}, {"m", 20}, {"mib", 20},
		{"g", 30}, {"gib", 30}, {"t", 40}, {"tib", 40},
	};
	const char *p = s;
	uint64_t v;
	int r = parse_digits(&p, &v);
	if (r == -EINVAL) {
		sb_printf(err, "not a size (a number with an optional unit K, M, G, T or KiB, MiB, ...)");
		return -EINVAL;
	}
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcasecmp(p, units[i].unit))
			continue;
		if (r == -ERANGE || v > (UINT64_MAX >> units[i].shift)) {
			sb_printf(err, "too large");
			return -ERANGE;
		}
		*out = v << units[i].shift;
		return 0;
	}
	if (!strcasecmp(p, "kb") || !strcasecmp(p, "mb") || !strcasecmp(p, "gb") || !strcasecmp(p, "tb"))
		sb_printf(err, "unit '%s' is ambiguous: write %.1s or %.1siB (1024-based)", p, p, p);
	else
		sb_printf(err, "unknown unit '%s' (K, M, G, T or KiB, MiB, GiB, TiB)", p);
	return -EINVAL;
}

bool is_table_dir_name(const char *name)
{
	const char *dash = strrchr(name, '-');
	return dash && dash > name && strlen(dash + 1) == 32 &&
	       strspn(dash + 1, "0123456789abcdef") == 32;
}

uint64_t random_below(uint64_t n)
{
	uint64_t v = 0;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
		v = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32); /* never blocks, never fails */
	return v % n;
}

bool mounted_at(int dirfd, const char *name, dev_t parent_dev)
{
	struct statx sx;
	if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC, STATX_TYPE, &sx) < 0)
		return true;
	return makedev(sx.stx_dev_major, sx.stx_dev_minor) != parent_dev ||
	       ((sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
		(sx.stx_attributes & STATX_ATTR_MOUNT_ROOT));
}
