/* commitlog.c: Cassandra commitlog segments in a store (commitlog.h). */
#include "commitlog.h"
#include "hash.h"
#include "manifest.h"
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zstd.h>

#define META_MAGIC 0x184D2A53u /* a zstd skippable frame's (0x184D2A50 to 0x184D2A5F) */
#define META_MAX 65536u
/* Format 2 follows the metadata with a second skippable frame holding the SHA-256 of the
 * metadata's bytes, so that damage there (an archive time: the window, prune) is seen; format
 * 1 objects, written before, have none. */
#define META_FORMAT 2
#define META_FORMAT_UNSUMMED 1
#define SUM_MAGIC 0x184D2A54u
#define SUM_FRAME (8 + 32)

static bool all_digits(const char *s, size_t n)
{
	if (n == 0 || n > 19)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static int64_t digits_value(const char *s, size_t n, bool *overflow)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > INT64_MAX)
			*overflow = true;
	}
	return (int64_t)v;
}

/* CommitLogDescriptor.COMMIT_LOG_FILE_PATTERN: CommitLog-((\d+)-)?(\d+).log */
int commitlog_parse_name(const char *name, int32_t *version, int64_t *id)
{
	static const char pre[] = "CommitLog-", suf[] = ".log";
	size_t len = strlen(name);
	if (len <= strlen(pre) + strlen(suf) || strncmp(name, pre, strlen(pre)) != 0 ||
	    strcmp(name + len - strlen(suf), suf) != 0)
		return -EINVAL;
	const char *p = name + strlen(pre), *end = name + len - strlen(suf);
	const char *dash = memchr(p, '-', (size_t)(end - p));
	bool overflow = false;
	int64_t v = 0;
	if (dash) {
		if (!all_digits(p, (size_t)(dash - p)))
			return -EINVAL;
		v = digits_value(p, (size_t)(dash - p), &overflow);
		p = dash + 1;
	}
	if (!all_digits(p, (size_t)(end - p)))
		return -EINVAL;
	int64_t i = digits_value(p, (size_t)(end - p), &overflow);
	if (overflow || v > INT32_MAX)
		return -EINVAL;
	*version = (int32_t)v;
	*id = i;
	return 0;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* CRC-32 (IEEE 802.3, java.util.zip.CRC32's) of len bytes, continuing from crc (0 to start). */
static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc >> 1 ^ (0xEDB88320u & -(crc & 1));
	}
	return ~crc;
}

/* FBUtilities.updateChecksumInt: the int's four bytes, big-endian. */
static uint32_t crc_int(uint32_t crc, uint32_t v)
{
	unsigned char b[4] = {v >> 24, v >> 16, v >> 8, v};
	return crc32_update(crc, b, 4);
}

int commitlog_parse_header(const void *buf, size_t len, int32_t *version, int64_t *id,
			   struct strbuf *err)
{
	const unsigned char *p = buf;
	if (len < 18) {
		sb_printf(err, "%zu bytes: too short for a commitlog header", len);
		return -EBADMSG;
	}
	uint32_t v = be32(p), hi = be32(p + 4), lo = be32(p + 8);
	size_t plen = (size_t)p[12] << 8 | p[13];
	if (len < 14 + plen + 4) {
		sb_printf(err, "header parameters of %zu bytes run past the end", plen);
		return -EBADMSG;
	}
	uint32_t crc = crc_int(crc_int(crc_int(0, v), lo), hi);
	crc = crc_int(crc, (uint32_t)plen);
	crc = crc32_update(crc, p + 14, plen);
	if (crc != be32(p + 14 + plen)) {
		sb_printf(err, "header CRC %08" PRIx32 " does not match its contents (%08" PRIx32 ")",
			  be32(p + 14 + plen), crc);
		return -EBADMSG;
	}
	*version = (int32_t)v;
	*id = (int64_t)((uint64_t)hi << 32 | lo);
	return 0;
}

int commitlog_key(const char *node, const char *name, struct strbuf *key)
{
	int32_t v;
	int64_t id;
	if (!name_is_component(node) || node[0] == '.' || commitlog_parse_name(name, &v, &id) < 0)
		return -EINVAL;
	return sb_printf(key, COMMITLOG_PREFIX "%s/%s.zst", node, name);
}

int commitlog_describe(const char *name, const void *data, size_t len, struct commitlog_meta *m,
		       struct strbuf *err)
{
	int32_t nv, hv;
	int64_t nid, hid;
	if (commitlog_parse_name(name, &nv, &nid) < 0) {
		sb_printf(err, "not a commitlog segment's name (CommitLog-<version>-<id>.log)");
		return -EINVAL;
	}
	if (len > COMMITLOG_MAX_SIZE) {
		sb_printf(err, "%zu bytes: larger than any commitlog segment", len);
		return -EINVAL;
	}
	int r = commitlog_parse_header(data, len, &hv, &hid, err);
	if (r < 0)
		return r;
	if (hv < COMMITLOG_MIN_VERSION) {
		sb_printf(err, "commitlog version %" PRId32 ": older than Cassandra 3.0's (%d), not supported",
			  hv, COMMITLOG_MIN_VERSION);
		return -EBADMSG;
	}
	if (hid != nid || (nv != 0 && hv != nv)) {
		sb_printf(err, "its header says version %" PRId32 ", id %" PRId64 ", its name version %"
			  PRId32 ", id %" PRId64, hv, hid, nv, nid);
		return -EBADMSG;
	}
	/* the one name Cassandra gives it: no other name of the same segment is stored beside
	 * it (a replay would read it twice), and Cassandra's replay finds its version there */
	char canon[64];
	snprintf(canon, sizeof(canon), "CommitLog-%" PRId32 "-%" PRId64 ".log", hv, hid);
	if (strcmp(name, canon) != 0) {
		sb_printf(err, "not the name Cassandra gives this segment (%s, from its header)", canon);
		return -EBADMSG;
	}
	if (strlen(name) >= sizeof(m->name))
		return -EINVAL;
	strcpy(m->name, name);
	m->version = hv;
	m->id = hid;
	m->size = len;
	return sha256_buf(data, len, m->sha256);
}

/* ---- the object: metadata frame, then the segment ------------------------------------- */

static int meta_json(const struct commitlog_meta *m, struct strbuf *out)
{
	char sha[65];
	hex_encode(m->sha256, 32, sha);
	json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:I, s:s, s:i, s:I, s:I, s:I, s:I}", "format",
			      META_FORMAT, "node", m->node, "host_id", m->host_id, "name", m->name, "size",
			      (json_int_t)m->size, "sha256", sha, "version", (int)m->version, "id",
			      (json_int_t)m->id, "archived_ms", (json_int_t)m->archived_ms, "mtime_ms",
			      (json_int_t)m->mtime_ms, "created_ms", (json_int_t)m->created_ms);
	if (!o) /* jansson refuses a string that is not UTF-8 */
		return -EILSEQ;
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (!s)
		return -ENOMEM;
	int r = sb_puts(out, s);
	free(s);
	return r;
}

static int get_s(json_t *o, const char *k, char *out, size_t outlen)
{
	const char *s = json_string_value(json_object_get(o, k));
	if (!s || strlen(s) >= outlen)
		return -EBADMSG;
	strcpy(out, s);
	return 0;
}

static int get_i(json_t *o, const char *k, int64_t min, int64_t max, int64_t *out)
{
	json_t *v = json_object_get(o, k);
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return -EBADMSG;
	*out = json_integer_value(v);
	return 0;
}

/* Parses the metadata of a segment stored under node and name (from its key); its format
 * into *format. */
static int meta_parse(const char *buf, size_t len, const char *node, const char *name,
		      struct commitlog_meta *m, int64_t *format, struct strbuf *err)
{
	json_error_t je;
	json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!o) {
		sb_printf(err, "metadata: %s", je.text);
		return -EBADMSG;
	}
	memset(m, 0, sizeof(*m));
	char sha[65];
	int64_t size = 0, version = 0;
	int r = get_i(o, "format", META_FORMAT_UNSUMMED, META_FORMAT, format);
	r = r ?: get_s(o, "node", m->node, sizeof(m->node));
	r = r ?: get_s(o, "host_id", m->host_id, sizeof(m->host_id));
	r = r ?: get_s(o, "name", m->name, sizeof(m->name));
	r = r ?: get_s(o, "sha256", sha, sizeof(sha));
	r = r ?: get_i(o, "size", 0, (int64_t)COMMITLOG_MAX_SIZE, &size);
	r = r ?: get_i(o, "version", 0, INT32_MAX, &version);
	r = r ?: get_i(o, "id", 0, INT64_MAX, &m->id);
	r = r ?: get_i(o, "archived_ms", INT64_MIN, INT64_MAX, &m->archived_ms);
	r = r ?: get_i(o, "mtime_ms", INT64_MIN, INT64_MAX, &m->mtime_ms);
	r = r ?: get_i(o, "created_ms", INT64_MIN, INT64_MAX, &m->created_ms);
	json_decref(o);
	if (r == 0 && hex_decode(sha, m->sha256, 32) < 0)
		r = -EBADMSG;
	int32_t nv;
	int64_t nid;
	if (r == 0 && (strcmp(m->node, node) != 0 || strcmp(m->name, name) != 0 ||
		       commitlog_parse_name(m->name, &nv, &nid) < 0 || nid != m->id)) {
		sb_printf(err, "metadata names another segment (%s of %s)", m->name, m->node);
		return -EBADMSG;
	}
	if (r < 0)
		sb_printf(err, "metadata: a field is missing or out of range");
	m->size = (uint64_t)size;
	m->version = (int32_t)version;
	return r;
}

static void le32_put(unsigned char *p, uint32_t v)
{
	p[0] = v, p[1] = v >> 8, p[2] = v >> 16, p[3] = v >> 24;
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The whole object for segment data into out. */
static int encode(const struct commitlog_meta *m, const void *data, size_t len, int level,
		  struct strbuf *out)
{
	struct strbuf js = {0};
	int r = meta_json(m, &js);
	if (r < 0 || js.len > META_MAX) {
		sb_free(&js);
		return r < 0 ? r : -E2BIG;
	}
	size_t bound = ZSTD_compressBound(len), head = 8 + js.len + SUM_FRAME;
	char *buf = malloc(head + bound);
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	if (!buf || !cc) {
		free(buf);
		ZSTD_freeCCtx(cc);
		sb_free(&js);
		return -ENOMEM;
	}
	le32_put((unsigned char *)buf, META_MAGIC);
	le32_put((unsigned char *)buf + 4, (uint32_t)js.len);
	memcpy(buf + 8, js.buf, js.len);
	unsigned char *sum = (unsigned char *)buf + 8 + js.len;
	le32_put(sum, SUM_MAGIC);
	le32_put(sum + 4, 32);
	r = sha256_buf(js.buf, js.len, sum + 8);
	sb_free(&js);
	if (r < 0) {
		free(buf);
		ZSTD_freeCCtx(cc);
		return r;
	}
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
	size_t z = ZSTD_compress2(cc, buf + head, bound, data, len);
	ZSTD_freeCCtx(cc);
	if (ZSTD_isError(z)) {
		free(buf);
		return -EIO;
	}
	free(out->buf);
	*out = (struct strbuf){.buf = buf, .len = head + z, .cap = head + bound};
	return 0;
}

/* Splits commitlogs/<node>/<name>.zst. */
static int split_key(const char *key, char node[256], char name[256])
{
	size_t plen = strlen(COMMITLOG_PREFIX), len = strlen(key);
	if (strncmp(key, COMMITLOG_PREFIX, plen) != 0 || len < plen + 4 || strcmp(key + len - 4, ".zst"))
		return -EINVAL;
	const char *n = key + plen, *slash = strchr(n, '/');
	if (!slash || (size_t)(slash - n) >= 256 || (size_t)(key + len - 4 - slash - 1) >= 256)
		return -EINVAL;
	snprintf(node, 256, "%.*s", (int)(slash - n), n);
	snprintf(name, 256, "%.*s", (int)(key + len - 4 - slash - 1), slash + 1);
	int32_t v;
	int64_t id;
	if (!name_is_component(node) || node[0] == '.' || commitlog_parse_name(name, &v, &id) < 0)
		return -EINVAL;
	return 0;
}

/* The metadata frame's header (the first 8 bytes of an object, n of them given): the length of
 * the JSON that follows it in *js_len. 0, or -EBADMSG with err. */
static int head_length(const unsigned char *h, size_t n, size_t *js_len, struct strbuf *err)
{
	if (n < 8 || le32(h) != META_MAGIC || le32(h + 4) > META_MAX) {
		sb_printf(err, "not a stored commitlog segment (no metadata frame)");
		return -EBADMSG;
	}
	*js_len = le32(h + 4);
	return 0;
}

/* The head of a stored object, from the n bytes at obj (its first bytes, or all of it): the
 * metadata frame, checked against the frame after it holding its SHA-256 (required from
 * format 2, checked wherever it is there), parsed for a segment stored under node and name.
 * *data_off: where the segment's frame starts. 0, or -EBADMSG with err. */
static int parse_head(const unsigned char *obj, size_t n, const char *node, const char *name,
		      struct commitlog_meta *m, size_t *data_off, struct strbuf *err)
{
	size_t js_len;
	int r = head_length(obj, n, &js_len, err);
	if (r == 0 && js_len > n - 8) {
		sb_printf(err, "metadata frame cut short");
		r = -EBADMSG;
	}
	if (r < 0)
		return r;
	const unsigned char *sum = obj + 8 + js_len;
	bool summed = n - 8 - js_len >= SUM_FRAME && le32(sum) == SUM_MAGIC && le32(sum + 4) == 32;
	unsigned char want[32];
	if (summed && (sha256_buf(obj + 8, js_len, want) < 0 || memcmp(want, sum + 8, 32) != 0)) {
		sb_printf(err, "damaged: its metadata does not match the checksum stored with it");
		return -EBADMSG;
	}
	int64_t format = 0;
	r = meta_parse((const char *)obj + 8, js_len, node, name, m, &format, err);
	if (r == 0 && format != META_FORMAT_UNSUMMED && !summed) {
		sb_printf(err, "damaged: the checksum of its metadata is missing");
		r = -EBADMSG;
	}
	*data_off = 8 + js_len + (summed ? SUM_FRAME : 0);
	return r;
}

/* Reads the head of an object (its metadata frame and the checksum frame after it, as far as
 * the object goes) into *head (malloc'd, the caller's), *n bytes. */
static int read_head(struct cb_io *io, unsigned char **head, size_t *n, struct strbuf *err)
{
	unsigned char h[8];
	ssize_t got = cb_io_pread(io, h, 8, 0);
	if (got < 0)
		return (int)got;
	size_t len;
	int r = head_length(h, (size_t)got, &len, err);
	if (r < 0)
		return r;
	unsigned char *buf = malloc(8 + len + SUM_FRAME);
	if (!buf)
		return -ENOMEM;
	got = cb_io_pread(io, buf, 8 + len + SUM_FRAME, 0);
	if (got < 0) {
		free(buf);
		return (int)got;
	}
	*head = buf;
	*n = (size_t)got;
	return 0;
}

int commitlog_read_meta(struct cb_backend *b, const char *key, struct commitlog_meta *m,
			struct strbuf *err)
{
	char node[256], name[256];
	if (split_key(key, node, name) < 0)
		return -EINVAL;
	struct cb_io *io = NULL;
	unsigned char *head = NULL;
	size_t n = 0, off;
	int r = cb_backend_open_read(b, key, &io);
	r = r ?: read_head(io, &head, &n, err);
	r = r ?: parse_head(head, n, node, name, m, &off, err);
	if (r < 0 && !err->len && *cb_backend_last_error()) /* an encrypted object that fails
							       * authentication says so there */
		sb_puts(err, cb_backend_last_error());
	free(head);
	cb_io_close(io);
	return r;
}

/* Decodes the segment frame (len bytes at buf) into m->size bytes, checked against m. */
static int decode(const char *buf, size_t len, const struct commitlog_meta *m, void **data,
		  struct strbuf *err)
{
	if (ZSTD_getFrameContentSize(buf, len) != m->size) { /* before a buffer of its size */
		sb_puts(err, "damaged: its segment frame does not hold the size its metadata names");
		return -EBADMSG;
	}
	void *out = malloc(m->size ? m->size : 1);
	if (!out)
		return -ENOMEM;
	size_t z = ZSTD_decompress(out, m->size, buf, len);
	unsigned char sha[32];
	if (ZSTD_isError(z) || z != m->size || sha256_buf(out, z, sha) < 0 || memcmp(sha, m->sha256, 32)) {
		if (ZSTD_isError(z))
			sb_printf(err, "damaged: its bytes do not decompress (zstd: %s)", ZSTD_getErrorName(z));
		else
			sb_puts(err, "damaged: its bytes are not the ones its metadata names (SHA-256 or size)");
		free(out);
		return -EBADMSG;
	}
	*data = out;
	return 0;
}

int commitlog_parse_object(const char *key, const void *obj, size_t len, struct commitlog_meta *m,
			   void **data, struct strbuf *err)
{
	char node[256], name[256];
	if (split_key(key, node, name) < 0)
		return -EINVAL;
	size_t off;
	int r = parse_head(obj, len, node, name, m, &off, err);
	return r ?: decode((const char *)obj + off, len - off, m, data, err);
}

int commitlog_read(struct cb_backend *b, const char *key, const struct commitlog_meta *m,
		   void **data, struct strbuf *err)
{
	char *buf = NULL;
	size_t len = 0;
	int r = cb_backend_get(b, key, ZSTD_compressBound(m->size) + 8 + META_MAX + SUM_FRAME, &buf, &len);
	if (r < 0)
		return r;
	struct commitlog_meta now;
	r = commitlog_parse_object(key, buf, len, &now, data, err);
	free(buf);
	if (r == 0 && (now.size != m->size || memcmp(now.sha256, m->sha256, 32) != 0)) {
		sb_puts(err, "replaced since its metadata was read: other bytes under this name");
		free(*data);
		*data = NULL;
		r = -EBADMSG;
	}
	return r;
}

/* Whether the object at key, whose metadata (old) names the bytes of m, holds them whole:
 * COMMITLOG_PRESENT, or -EEXIST with err (a damaged copy: saying "stored" would let Cassandra
 * delete the one good copy), or the read's error. */
static int stored_intact(struct cb_backend *b, const char *key, const struct commitlog_meta *old,
			 struct strbuf *err)
{
	void *data = NULL;
	struct strbuf why = {0};
	int r = commitlog_read(b, key, old, &data, &why);
	free(data);
	if (r == -EBADMSG) {
		sb_printf(err, "the store holds a damaged copy of this segment (%s); not replaced: delete "
			  "%s from the store, then archive the segment again", why.buf ? why.buf : "", key);
		r = -EEXIST;
	}
	sb_free(&why);
	return r < 0 ? r : COMMITLOG_PRESENT;
}

/* What the store holds under m's key: COMMITLOG_PRESENT (the same bytes, read whole), -EEXIST
 * (others, or a damaged copy), -ENOENT (nothing). */
static int compare_stored(struct cb_backend *b, const char *key, const struct commitlog_meta *m,
			  struct strbuf *err)
{
	struct commitlog_meta old;
	struct strbuf why = {0};
	int r = commitlog_read_meta(b, key, &old, &why);
	if (r == -EBADMSG) {
		sb_printf(err, "the store holds an unreadable object under this name (%s); not replaced",
			  why.buf ? why.buf : "");
		r = -EEXIST;
	} else if (r == 0 && (old.size != m->size || memcmp(old.sha256, m->sha256, 32) != 0)) {
		char sha[65];
		hex_encode(old.sha256, 32, sha);
		sb_printf(err, "the store holds other bytes under this name (%" PRIu64 " bytes, sha256 %.16s...); "
			  "not replaced", old.size, sha);
		r = -EEXIST;
	} else if (r == 0) {
		r = stored_intact(b, key, &old, err);
	}
	sb_free(&why);
	return r;
}

int commitlog_find(struct cb_backend *b, const struct commitlog_meta *m, struct strbuf *err)
{
	struct strbuf key = {0};
	int r = commitlog_key(m->node, m->name, &key);
	r = r ?: compare_stored(b, key.buf, m, err);
	sb_free(&key);
	return r;
}

int commitlog_put(struct cb_backend *b, const struct commitlog_meta *m, const void *data,
		  size_t len, int level, struct strbuf *err)
{
	struct strbuf key = {0}, obj = {0};
	int r = commitlog_key(m->node, m->name, &key);
	if (r < 0)
		return r;
	/* most calls find nothing: Cassandra archives each segment once, and again only after a
	 * failure or a restart that found it unarchived */
	r = compare_stored(b, key.buf, m, err);
	if (r == -ENOENT) {
		r = encode(m, data, len, level, &obj);
		if (r == -EILSEQ)
			sb_printf(err, "the node name or host id is not valid UTF-8");
		/* one exclusive put: atomic (a local store links a complete file; S3 shows an
		 * object only once its PUT completed) and never replacing */
		r = r ?: cb_backend_put(b, key.buf, obj.buf, obj.len, CB_PUT_EXCLUSIVE);
		if (r == -EEXIST) /* another archive of the same segment won the race */
			r = compare_stored(b, key.buf, m, err);
	}
	sb_free(&obj);
	sb_free(&key);
	return r;
}

/* ---- listing ---------------------------------------------------------------------------- */

struct list_ctx {
	struct cb_backend *b;
	struct commitlog_list *out;
	bool strict;
	struct strbuf *err;
	char **keys;
	size_t nkeys;
};

static int collect_key(void *ctx, const char *key, uint64_t size)
{
	(void)size;
	struct list_ctx *c = ctx;
	char node[256], name[256];
	if (split_key(key, node, name) < 0)
		return 0; /* not a segment's key: someone else's object, left alone */
	char *k = strdup(key);
	if (!k || ptrv_push(&c->keys, &c->nkeys, k) < 0) {
		free(k);
		return -ENOMEM;
	}
	return 0;
}

static int cmp_meta(const void *a, const void *b)
{
	const struct commitlog_meta *x = a, *y = b;
	int c = strcmp(x->node, y->node);
	return c ? c : (x->id > y->id) - (x->id < y->id);
}

static int read_listed(struct list_ctx *c)
{
	c->out->v = calloc(c->nkeys ? c->nkeys : 1, sizeof(*c->out->v));
	if (!c->out->v)
		return -ENOMEM;
	for (size_t i = 0; i < c->nkeys; i++) {
		struct strbuf why = {0};
		int r = commitlog_read_meta(c->b, c->keys[i], &c->out->v[c->out->n], &why);
		if (r == 0) {
			c->out->n++;
		} else if (r == -ENOENT && !c->strict) {
			/* deleted since the listing */
		} else if (c->strict || (r != -EBADMSG && r != -ENOENT)) {
			sb_printf(c->err, "%s: %s", c->keys[i], why.buf ? why.buf : cb_backend_why(r));
			sb_free(&why);
			return r;
		} else {
			c->out->bad++;
			sb_printf(c->err, "%s%s: %s", c->err->len ? "; " : "", c->keys[i], why.buf ? why.buf : "");
		}
		sb_free(&why);
	}
	qsort(c->out->v, c->out->n, sizeof(*c->out->v), cmp_meta);
	return 0;
}

static int note_seen(void *ctx, const char *key, uint64_t size)
{
	(void)size;
	char node[256], name[256];
	int32_t version;
	int64_t id, *seen = ctx;
	if (split_key(key, node, name) == 0 && commitlog_parse_name(name, &version, &id) == 0 && id > *seen)
		*seen = id;
	return 0;
}

int commitlog_seen_id(struct cb_backend *b, const char *node, int64_t *seen_id)
{
	*seen_id = -1;
	if (!name_is_component(node) || node[0] == '.')
		return -EINVAL;
	struct strbuf prefix = {0};
	int r = sb_printf(&prefix, COMMITLOG_PREFIX "%s/", node);
	r = r ?: cb_backend_list(b, prefix.buf, note_seen, seen_id);
	sb_free(&prefix);
	return r;
}

int commitlog_list(struct cb_backend *b, const char *node, bool strict, struct commitlog_list *out,
		   struct strbuf *err)
{
	struct strbuf prefix = {0};
	*out = (struct commitlog_list){0};
	int r = node ? sb_printf(&prefix, COMMITLOG_PREFIX "%s/", node) : sb_puts(&prefix, COMMITLOG_PREFIX);
	if (r < 0)
		return r;
	if (node && (!name_is_component(node) || node[0] == '.')) {
		sb_free(&prefix);
		return -EINVAL;
	}
	struct list_ctx c = {.b = b, .out = out, .strict = strict, .err = err};
	r = cb_backend_list(b, prefix.buf, collect_key, &c);
	if (r < 0)
		sb_printf(err, "cannot list %s: %s", prefix.buf, cb_backend_why(r));
	r = r ?: read_listed(&c);
	for (size_t i = 0; i < c.nkeys; i++)
		free(c.keys[i]);
	free(c.keys);
	sb_free(&prefix);
	if (r < 0)
		commitlog_list_free(out);
	return r;
}

static int cmp_key(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int commitlog_keys(struct cb_backend *b, char ***keys, size_t *n)
{
	struct list_ctx c = {.b = b};
	int r = cb_backend_list(b, COMMITLOG_PREFIX, collect_key, &c);
	if (r < 0) {
		for (size_t i = 0; i < c.nkeys; i++)
			free(c.keys[i]);
		free(c.keys);
		return r;
	}
	if (c.nkeys)
		qsort(c.keys, c.nkeys, sizeof(*c.keys), cmp_key);
	*keys = c.keys;
	*n = c.nkeys;
	return 0;
}

int commitlog_list_host_elsewhere(struct cb_backend *b, const char *node, const char *host_id,
				  struct commitlog_list *out, struct strbuf *err)
{
	struct commitlog_list all;
	*out = (struct commitlog_list){0};
	int r = commitlog_list(b, NULL, false, &all, err);
	if (r < 0)
		return r;
	out->v = calloc(all.n + 1, sizeof(*out->v));
	if (!out->v)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < all.n; i++)
		if (strcmp(all.v[i].node, node) != 0 && !strcasecmp(all.v[i].host_id, host_id))
			out->v[out->n++] = all.v[i];
	out->bad = all.bad; /* named in err: whose they are is not known */
	commitlog_list_free(&all);
	if (r < 0)
		commitlog_list_free(out);
	return r;
}

void commitlog_list_free(struct commitlog_list *l)
{
	free(l->v);
	*l = (struct commitlog_list){0};
}

int64_t commitlog_first_id_since(const struct commitlog_meta *v, size_t n, int64_t from_ms)
{
	int64_t first = INT64_MAX;
	for (size_t i = 0; i < n; i++)
		if (v[i].archived_ms >= from_ms && v[i].id < first)
			first = v[i].id;
	return first;
}

/* Whether segment m was written whole by t_ms: archived by then, or last written (its mtime,
 * when known) by then. Its archive time alone can be far later: Cassandra archives a segment
 * again after a restart when the first try failed. */
static bool finished_by(const struct commitlog_meta *m, int64_t t_ms)
{
	return m->archived_ms <= t_ms || (m->mtime_ms > 0 && m->mtime_ms <= t_ms);
}

/* The segment being written at t_ms: a node writes its segments one after the other in id
 * order, so it is the least id above every segment finished by then. INT64_MAX: none. */
static int64_t spanning_id_at(const struct commitlog_meta *v, size_t n, int64_t t_ms)
{
	int64_t done = INT64_MIN, next = INT64_MAX;
	for (size_t i = 0; i < n; i++)
		if (finished_by(&v[i], t_ms) && v[i].id > done)
			done = v[i].id;
	for (size_t i = 0; i < n; i++)
		if (v[i].id > done && v[i].id < next)
			next = v[i].id;
	return next;
}

void commitlog_window_of(const struct commitlog_meta *v, size_t n, const struct commitlog_start *from,
			 int64_t to_ms, struct commitlog_window *w)
{
	*w = (struct commitlog_window){.from_ms = from->ms, .to_ms = to_ms, .seen_id = from->seen_id,
				       .spanning_id = INT64_MAX};
	w->first_id = commitlog_first_id_since(v, n, from->ms);
	if (to_ms != INT64_MAX)
		w->spanning_id = spanning_id_at(v, n, to_ms);
}

bool commitlog_in_window(const struct commitlog_meta *m, const struct commitlog_window *w)
{
	return (m->archived_ms >= w->from_ms || m->id >= w->from_ms || m->id >= w->first_id ||
		m->id > w->seen_id) &&
	       (m->id <= w->to_ms || m->archived_ms <= w->to_ms || m->id <= w->spanning_id);
}

/* Whether segment b, archived next after a with ids between theirs missing, may have begun a
 * later run of the node. Cassandra numbers a run's segments from idBase + 1, idBase being the
 * time it started (ms) or, with the clock behind, the greatest id there + 1
 * (CommitLogSegment.getNextId), then one by one: a run that began after a was last written
 * has ids after that write. b's id before a's last write (less a slack for the file
 * timestamp's coarseness) is of a's run. a's last write not kept: no gap is claimed. (A
 * restart with the clock stepped back skips one id after the greatest there: a gap is
 * claimed, which --ignore-segment-gaps goes past.) */
static bool began_a_run(const struct commitlog_meta *a, const struct commitlog_meta *b)
{
	return a->mtime_ms <= 0 || b->id >= a->mtime_ms - COMMITLOG_RUN_START_SLACK_MS;
}

ssize_t commitlog_next_gap(const struct commitlog_meta *v, size_t n, size_t from)
{
	for (size_t i = from; i + 1 < n; i++) {
		int64_t missing = v[i + 1].id - v[i].id - 1;
		if (missing > 0 && missing <= COMMITLOG_GAP_MAX && !began_a_run(&v[i], &v[i + 1]))
			return (ssize_t)i;
	}
	return -1;
}

/* The mtime of table tb's snapshot manifest.json, which Cassandra (2.2 on) writes once the
 * table is flushed and its links are made, and its newest file's, into *snap and *newest
 * (each left alone when there is none). */
static void table_times(const struct manifest_table *tb, int64_t *snap, int64_t *newest)
{
	for (size_t f = 0; f < tb->nfiles; f++) {
		const struct manifest_file *mf = &tb->files[f];
		if (!*mf->dir && !strcmp(mf->name, "manifest.json") && mf->attr.mtime_ns < *snap)
			*snap = mf->attr.mtime_ns;
		if (mf->attr.mtime_ns > *newest)
			*newest = mf->attr.mtime_ns;
	}
}

int64_t commitlog_backup_start_ms(const struct manifest *m)
{
	/* nodetool snapshot flushes and links one table after another: the first table's
	 * snapshot, less the time its flush took, is when the first memtable was switched.
	 * Without manifest.json files (Cassandra before 2.2) a table's snapshot cannot be told
	 * from its last flush, months ago for a table nobody writes: the backup's newest file,
	 * its last table's flush, less the same slack, as far as a snapshot takes no longer. */
	int64_t first = INT64_MAX, newest = INT64_MIN;
	for (size_t k = 0; k < m->nkeyspaces; k++)
		for (size_t i = 0; i < m->keyspaces[k].ntables; i++)
			table_times(&m->keyspaces[k].tables[i], &first, &newest);
	int64_t t = first != INT64_MAX ? first : newest != INT64_MIN ? newest : m->created_ns;
	if (t > m->created_ns)
		t = m->created_ns;
	t -= (int64_t)COMMITLOG_FLUSH_SLACK_MS * 1000000;
	return t >= 0 ? t / 1000000 : -((-t + 999999) / 1000000);
}

/* Every backup the catalog lists, with its node and host id, and the start of its window once
 * read: a segment's window starts at the earliest start of the backups of its node name or of
 * its host id. Not the start of the backup made first: a snapshot backed up after a newer one
 * (an upload retried the next day) starts earlier. */
struct node_backups {
	char **node, **ref, **host;
	struct commitlog_start *start; /* .ms INT64_MIN until read */
	size_t n, cap;
};

static int grow_backups(struct node_backups *o)
{
	size_t cap = o->cap ? 2 * o->cap : 16;
	char **nd = realloc(o->node, cap * sizeof(*nd));
	if (nd)
		o->node = nd;
	char **rf = realloc(o->ref, cap * sizeof(*rf));
	if (rf)
		o->ref = rf;
	char **hs = realloc(o->host, cap * sizeof(*hs));
	if (hs)
		o->host = hs;
	struct commitlog_start *st = realloc(o->start, cap * sizeof(*st));
	if (st)
		o->start = st;
	if (!nd || !rf || !hs || !st)
		return -ENOMEM;
	o->cap = cap;
	return 0;
}

static int note_backup(void *ctx, const struct cb_backup_summary *b)
{
	struct node_backups *o = ctx;
	if (b->invalid)
		return 0;
	if (o->n == o->cap && grow_backups(o) < 0)
		return -ENOMEM;
	o->node[o->n] = strdup(b->node);
	o->ref[o->n] = strdup(b->ref); /* the manifest's key below backups/ */
	o->host[o->n] = strdup(b->host_id ? b->host_id : "");
	o->start[o->n] = (struct commitlog_start){.ms = INT64_MIN};
	o->n++;
	return o->node[o->n - 1] && o->ref[o->n - 1] && o->host[o->n - 1] ? 0 : -ENOMEM;
}

static void node_backups_free(struct node_backups *o)
{
	for (size_t i = 0; i < o->n; i++) {
		free(o->node[i]);
		free(o->ref[i]);
		free(o->host[i]);
	}
	free(o->node);
	free(o->ref);
	free(o->host);
	free(o->start);
}

/* The start of backup i's window, read once: an incremental's is its full backup's
 * (commitlog_window_start), or the epoch when that one is gone (every segment of the node
 * kept, rather than one too few). 0 or -errno with err. */
static int backup_start(struct store *s, struct node_backups *o, size_t i,
			struct commitlog_start *start, struct strbuf *err)
{
	if (o->start[i].ms == INT64_MIN) {
		struct manifest *m = NULL;
		struct strbuf why = {0};
		int q = store_read_manifest(s, o->ref[i], &m, NULL, &why);
		if (q < 0) {
			sb_printf(err, "cannot read backup %s: %s", o->ref[i], why.buf ? why.buf : strerror(-q));
		} else {
			struct commitlog_start from = {0};
			why.len = 0;
			q = commitlog_window_start(s, m, &from, &why);
			if (q == -ENOENT)
				from = (struct commitlog_start){0, -1}, q = 0;
			if (q < 0)
				sb_printf(err, "cannot read the full backup of %s: %s", o->ref[i],
					  why.buf ? why.buf : strerror(-q));
			o->start[i] = from;
		}
		manifest_free(m);
		sb_free(&why);
		if (q < 0)
			return q;
	}
	*start = o->start[i];
	return 0;
}

/* The start of the window of segment m: the earliest start of the backups of its node name,
 * and of its host id under any name (a host renamed since, whose point-in-time restore takes
 * it: commitlog_list_host_elsewhere). 0 with *start, 1 when no backup is of either, or -errno. */
static int segment_start(struct store *s, struct node_backups *o, const struct commitlog_meta *m,
			 struct commitlog_start *start, struct strbuf *err)
{
	int r = 1;
	for (size_t i = 0; r >= 0 && i < o->n; i++) {
		if (strcmp(o->node[i], m->node) != 0 && (!*m->host_id || strcasecmp(o->host[i], m->host_id) != 0))
			continue;
		struct commitlog_start t;
		int q = backup_start(s, o, i, &t, err);
		if (q < 0) {
			r = q;
			break;
		}
		/* the union of their windows lies within: the earliest start, the least id seen */
		if (r == 1 || t.ms < start->ms)
			start->ms = t.ms;
		if (r == 1 || t.seen_id < start->seen_id)
			start->seen_id = t.seen_id;
		r = 0;
	}
	return r;
}

/* The manifest of node's backup name in either layout: backups/NAME/NODE.json (NODE a host id
 * in either case), else the older backups/NAME.json when it describes node (a store upgraded
 * in place keeps its older full backups, and incrementals made since name them). -ENOENT, or
 * the read's error with err. */
static int read_node_backup(struct store *s, const char *name, const char *node, struct manifest **out,
			    struct strbuf *err)
{
	char ref[CB_REF_MAX];
	int r = store_backup_ref(name, node, ref);
	r = r ?: store_read_manifest(s, ref, out, NULL, err);
	if (r == -ENOENT) {
		r = store_backup_ref_other_case(s, name, node, ref);
		if (r == 0)
			r = store_read_manifest(s, ref, out, NULL, err);
		else if (r != -ENOENT)
			sb_printf(err, "cannot list backups/%s/: %s", name, cb_backend_why(r));
	}
	if (r != -ENOENT)
		return r;
	r = store_read_manifest(s, name, out, NULL, err);
	if (r == 0 && !manifest_node_key_same(manifest_node_key(*out), node)) {
		manifest_free(*out);
		*out = NULL;
		r = -ENOENT;
	}
	return r;
}

static struct commitlog_start start_of(const struct manifest *full)
{
	return (struct commitlog_start){
		.ms = commitlog_backup_start_ms(full),
		.seen_id = full->commitlog_seen ? full->commitlog_seen_id : COMMITLOG_SEEN_UNKNOWN};
}

int commitlog_window_start(struct store *s, const struct manifest *m, struct commitlog_start *from,
			   struct strbuf *err)
{
	if (!m->base || !*m->base) {
		*from = start_of(m);
		return 0;
	}
	struct manifest *base = NULL;
	int r = read_node_backup(s, m->base, manifest_node_key(m), &base, err);
	if (r == -ENOENT)
		sb_printf(err, "its full backup %s is not in the store", m->base);
	if (r == 0)
		*from = start_of(base);
	manifest_free(base);
	return r;
}

/* The least id of host_id's segments in l, under any node name, archived at or after from_ms;
 * INT64_MAX when there is none or host_id is empty. */
static int64_t host_first_id_since(const struct commitlog_list *l, const char *host_id, int64_t from_ms)
{
	int64_t first = INT64_MAX;
	for (size_t j = 0; *host_id && j < l->n; j++)
		if (!strcasecmp(l->v[j].host_id, host_id) && l->v[j].archived_ms >= from_ms && l->v[j].id < first)
			first = l->v[j].id;
	return first;
}

/* The least id of the segments under node name node archived at or after from_ms; INT64_MAX
 * when there is none. */
static int64_t node_first_id_since(const struct commitlog_list *l, const char *node, int64_t from_ms)
{
	int64_t first = INT64_MAX;
	for (size_t j = 0; j < l->n; j++)
		if (!strcmp(l->v[j].node, node) && l->v[j].archived_ms >= from_ms && l->v[j].id < first)
			first = l->v[j].id;
	return first;
}

/* Was the (node, host) pair of backup i already seen among o's first i backups? */
static bool pair_seen(const struct node_backups *o, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (!strcmp(o->node[j], o->node[i]) && !strcasecmp(o->host[j], o->host[i]))
			return true;
	return false;
}

/* The least id, archived at or after from_ms, among the segments a point-in-time restore of
 * any backup that could take a segment of node and host_id works out its window from: such a
 * backup is of that node name, or of that host id; its restore takes the segments under its
 * node name (its host's, and those that record none) and its host's under every name
 * (commitlog_list_host_elsewhere). Here every segment under its node name counts, which can
 * only keep more. INT64_MAX when there is none. */
static int64_t family_first_id_since(const struct commitlog_list *l, const struct node_backups *o,
				      const char *node, const char *host_id, int64_t from_ms)
{
	int64_t first = host_first_id_since(l, host_id, from_ms);
	for (size_t i = 0; i < o->n; i++) {
		bool could_take = !strcmp(o->node[i], node) || (*host_id && !strcasecmp(o->host[i], host_id));
		if (!could_take || pair_seen(o, i))
			continue;
		int64_t f = node_first_id_since(l, o->node[i], from_ms);
		first = f < first ? f : first;
		f = host_first_id_since(l, o->host[i], from_ms);
		first = f < first ? f : first;
	}
	return first;
}

/* A segment's window for retention: from start, its ids bounded by the segments of its node
 * name (l->v[run, end)) and those family_first_id_since names. Point-in-time restore
 * and copy take a host's segments under other names too, so a window worked out from one
 * name alone could let prune delete what they replay; this one holds theirs. */
static void retention_window(const struct commitlog_list *l, const struct node_backups *o, size_t run,
			     size_t end, const char *host_id, const struct commitlog_start *start,
			     struct commitlog_window *w)
{
	commitlog_window_of(l->v + run, end - run, start, INT64_MAX, w);
	int64_t family_first = family_first_id_since(l, o, l->v[run].node, host_id, start->ms);
	if (family_first < w->first_id)
		w->first_id = family_first;
}

int commitlog_retention(struct store *s, const struct commitlog_list *l, bool *due, struct strbuf *err)
{
	struct node_backups o = {0};
	int r = catalog_list_backups(store_catalog(s), note_backup, &o);
	if (r < 0)
		sb_printf(err, "cannot read the catalog of %s", store_location(s));
	for (size_t i = 0, end; r == 0 && i < l->n; i = end) {
		for (end = i + 1; end < l->n && !strcmp(l->v[end].node, l->v[i].node); end++)
			; /* l is by node: [i, end) is one node's */
		struct commitlog_window w = {0};
		struct commitlog_start start = {0};
		int have = 1;
		for (size_t k = i; r == 0 && k < end; k++) {
			/* a node's segments mostly record one host id: its window is worked out once */
			bool new_host = k == i || strcasecmp(l->v[k].host_id, l->v[k - 1].host_id) != 0;
			if (new_host)
				have = segment_start(s, &o, &l->v[k], &start, err);
			if (have < 0) {
				r = have;
				break;
			}
			if (have == 0 && new_host)
				retention_window(l, &o, i, end, l->v[k].host_id, &start, &w);
			due[k] = have == 0 && !commitlog_in_window(&l->v[k], &w);
		}
	}
	node_backups_free(&o);
	return r < 0 ? r : 0;
}
