/* util.h: small helpers shared by the catalog library and the programs.
 *
 * Conventions (as everywhere in cassbackup): functions return >= 0 on success or a negative
 * errno value; nothing here prints.
 */
#ifndef CASSBACKUP_UTIL_H
#define CASSBACKUP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

/* Growable NUL-terminated byte buffer. A zeroed struct is an empty buffer. */
struct strbuf {
	char *buf;
	size_t len;
	size_t cap;
};

int sb_append(struct strbuf *sb, const void *data, size_t len);
int sb_puts(struct strbuf *sb, const char *s);
int sb_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal (quotes included), escaping as RFC 8259 requires. */
int sb_json_str(struct strbuf *sb, const char *s);
void sb_free(struct strbuf *sb);

/* Appends s (not copied) to the array (*v, *n). 0 or -ENOMEM. */
int ptrv_push(char ***v, size_t *n, char *s);

/* Writes/reads all of buf, retrying on EINTR and short transfers. 0 or -errno.
 * read_full returns the number of bytes read (short only at end of file). */
int write_full(int fd, const void *buf, size_t len);
ssize_t pread_full(int fd, void *buf, size_t len, off_t off);

/* Reading a file once, start to end, in chunks (an sstable backed up or hashed): with O_DIRECT
 * where its file system allows, so its bytes are not copied through the page cache (a quarter
 * of create's CPU time) nor evict the node's hot pages there. Chunk buffers come from
 * direct_chunk_alloc (free() them); chunks are CB_DIRECT_ALIGN multiples at such offsets. */
#define CB_DIRECT_ALIGN 4096
void *direct_chunk_alloc(size_t len);
/* Sets O_DIRECT on fd (else advises sequential read-ahead). Returns whether it is direct. */
bool read_once_begin(int fd);
/* pread_full of len bytes at off into buf: short only at the end of the file. A direct read
 * the file system refuses (EINVAL: some accept O_DIRECT but not the read) is made again
 * through the page cache, and *direct cleared. */
ssize_t read_once_chunk(int fd, bool *direct, void *buf, size_t len, off_t off);

/* fsyncs the directory at path. */
int fsync_dir(const char *path);

/* Opens the directory path as a private one of this user's, creating it 0700 when missing (and
 * its missing parents, with parents): it must be owned by the effective user and writable by nobody else (no
 * group or other write, no sticky bit), else -EPERM, because whoever else can write there can
 * plant what we would read back (a catalog, cached frames). Returns the directory's descriptor
 * (O_CLOEXEC), or -errno with one line in err naming path and the reason. */
int open_private_dir(const char *path, bool parents, struct strbuf *err);

/* Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void hex_encode(const unsigned char *in, size_t n, char *out);
/* Parses exactly 2n hex characters. 0 or -EINVAL. */
int hex_decode(const char *in, unsigned char *out, size_t n);

/* Reads a whole (small) regular file into a NUL-terminated malloc'd buffer; *len gets its
 * size. Refuses files over max bytes with -EFBIG, a directory with -EISDIR, and anything
 * else but a regular file (a FIFO: never waited on) with -EINVAL. */
int read_small_file(const char *path, size_t max, char **out, size_t *len);

/* True when s is usable as one path component of something we create or show: not empty, not
 * "." or "..", no '/' and at most 255 bytes (NUL cannot occur in a C string). Every name read
 * from a store (backup, keyspace, table, index directory, file) is checked with this where it
 * is read; later code may assume it. */
bool name_is_component(const char *s);

/* True when name is a Cassandra table directory's (2.1 and later): "<table>-<32 hex digits>". */
bool is_table_dir_name(const char *name);

/* True when s is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates). */
bool utf8_valid(const char *s);

/* Formats bytes as "1.5 GiB" into out (at least 16 bytes). */
/* The first of the n elements of size bytes at base that cmp (which compares pointers to
 * elements, as qsort of an array of pointers gives them) finds equal to another, into *twice:
 * 1 when there is one, 0 when not (*twice NULL), -ENOMEM. */
int first_repeat(const void *base, size_t n, size_t size, int (*cmp)(const void *, const void *),
		 const void **twice);

void format_bytes(uint64_t bytes, char *out, size_t outlen);
/* Formats nanoseconds since the epoch as UTC ISO 8601 "2026-11-21T05:44:47Z". */
void format_time_utc(int64_t ns, char *out, size_t outlen);

int64_t now_ns(void);          /* CLOCK_REALTIME */
/* A number in [0, n) from the kernel's random source (getrandom): for jitter and backoff, so
 * that processes started together do not retry together (random() unseeded gives every
 * process the same sequence). n > 0. */
uint64_t random_below(uint64_t n);
double mono_seconds(void);     /* CLOCK_MONOTONIC */

/* Little-endian integers, as the zstd formats and the pack trailer store them. */
static inline void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}
static inline uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void put_le64(unsigned char *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}
static inline uint64_t get_le64(const unsigned char *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* Reads the decimal digits at *p into *v and moves *p past them. -EINVAL: no digit; -ERANGE:
 * over UINT64_MAX. */
int parse_digits(const char **p, uint64_t *v);

/* A size in bytes: N with an optional unit B, K/KiB, M/MiB, G/GiB, T/TiB (1024-based; case of
 * the letter ignored). "KB"/"MB"... are refused as ambiguous. */
int parse_size(const char *s, uint64_t *out, struct strbuf *err);

static inline void freep(void *p) { free(*(void **)p); }
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Is name under dirfd (never followed) something mounted there: on another device than its
 * parent's (parent_dev), or the root of a mount (a bind mount of a directory of the same file
 * system; statx's STATX_ATTR_MOUNT_ROOT)? Asks only the kernel's cached attributes, so a
 * stopped FUSE daemon cannot hang the caller. True too when name cannot be looked at. */
bool mounted_at(int dirfd, const char *name, dev_t parent_dev);

#endif
