/* manifest.c: see manifest.h. JSON through jansson; every value checked where it is read. */
#include "manifest.h"
#include "hash.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- errors ------------------------------------------------------------------------------ */

struct perr {
	char *buf;
	size_t len;
};

static int fail(struct perr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct perr *e, const char *fmt, ...)
{
	if (e->buf && e->len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->buf, e->len, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

/* --- writing ----------------------------------------------------------------------------- */

/* o[key] = name, or o[key_hex] = hex of its bytes when name is not UTF-8. */
/* o[key] = name, or o[key_hex] = its bytes in hex when it is not valid UTF-8 (a name or a
 * path on the node is bytes). */
static int put_name(json_t *o, const char *key, const char *name)
{
	json_t *s = json_string(name); /* NULL when name is not valid UTF-8 */
	if (s)
		return json_object_set_new(o, key, s) ? -ENOMEM : 0;
	size_t n = strlen(name);
	char *hex = malloc(2 * n + 1);
	char hkey[64];
	if (!hex)
		return -ENOMEM;
	hex_encode((const unsigned char *)name, n, hex);
	snprintf(hkey, sizeof(hkey), "%s_hex", key);
	int r = json_object_set_new(o, hkey, json_string(hex)) ? -ENOMEM : 0;
	free(hex);
	return r;
}

static int put_int(json_t *o, const char *key, int64_t v)
{
	return json_object_set_new(o, key, json_integer((json_int_t)v)) ? -ENOMEM : 0;
}

/* o[key] = v, text: -EILSEQ when it is not valid UTF-8. */
static int put_str(json_t *o, const char *key, const char *v)
{
	json_t *s = json_string(v ? v : "");
	if (!s)
		return -EILSEQ;
	return json_object_set_new(o, key, s) ? -ENOMEM : 0;
}

static int put_sha(json_t *o, const unsigned char sha[32])
{
	char hex[65];
	hex_encode(sha, 32, hex);
	return put_str(o, "sha256", hex);
}

static int put_attr(json_t *o, const struct cb_attr *a)
{
	return put_int(o, "mode", a->mode) ?: put_int(o, "uid", a->uid) ?:
	       put_int(o, "gid", a->gid) ?: put_int(o, "mtime_ns", a->mtime_ns);
}

static json_t *file_json(const struct manifest_file *f)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	int r = (*f->dir ? put_name(o, "dir", f->dir) : 0) ?: put_name(o, "name", f->name) ?:
		put_int(o, "size", (int64_t)f->size) ?: put_attr(o, &f->attr) ?: put_sha(o, f->sha256);
	if (!r && f->added)
		r = json_object_set_new(o, "added", json_true()) ? -ENOMEM : 0;
	if (r) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int put_links(json_t *o, const struct manifest_links *links, size_t n)
{
	json_t *a = json_array();
	int r = a ? 0 : -ENOMEM;
	for (size_t i = 0; !r && i < n; i++) {
		json_t *l = json_object();
		r = !l || json_array_append_new(a, l) ? -ENOMEM : 0;
		r = r ?: put_name(l, "dir", links[i].dir) ?: put_str(l, "left", links[i].left);
		if (!r && links[i].found)
			r = put_str(l, "found", links[i].found);
	}
	if (!r && json_object_set(o, "links", a))
		r = -ENOMEM;
	json_decref(a);
	return r;
}

static json_t *table_json(const struct manifest_table *t)
{
	json_t *o = json_object(), *dirs = json_array(), *files = json_array();
	int r = (!o || !dirs || !files) ? -ENOMEM : 0;
	r = r ?: put_name(o, "name", t->name) ?: put_str(o, "id", t->id) ?: put_attr(o, &t->attr);
	if (!r && t->schema_cql)
		r = put_str(o, "schema_cql", t->schema_cql);
	if (!r && t->nlinks)
		r = put_links(o, t->links, t->nlinks);
	if (!r && t->emptied_ms >= 0)
		r = put_int(o, "emptied_ms", t->emptied_ms);
	for (size_t i = 0; !r && i < t->ndirs; i++) {
		json_t *d = json_object();
		r = !d || json_array_append_new(dirs, d) ? -ENOMEM : 0;
		r = r ?: put_name(d, "name", t->dirs[i].name) ?: put_attr(d, &t->dirs[i].attr);
	}
	for (size_t i = 0; !r && i < t->nfiles; i++) {
		json_t *f = file_json(&t->files[i]);
		r = !f || json_array_append_new(files, f) ? -ENOMEM : 0;
	}
	if (!r && (json_object_set(o, "dirs", dirs) || json_object_set(o, "files", files)))
		r = -ENOMEM;
	json_decref(dirs);
	json_decref(files);
	if (r) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *keyspace_json(const struct manifest_keyspace *k)
{
	json_t *o = json_object(), *tables = json_array();
	int r = (!o || !tables) ? -ENOMEM : 0;
	r = r ?: put_name(o, "name", k->name) ?: put_attr(o, &k->attr);
	for (size_t i = 0; !r && i < k->ntables; i++) {
		json_t *t = table_json(&k->tables[i]);
		r = !t || json_array_append_new(tables, t) ? -ENOMEM : 0;
	}
	if (!r && json_object_set(o, "tables", tables))
		r = -ENOMEM;
	json_decref(tables);
	if (r) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int dump(json_t *root, struct strbuf *out)
{
	char *s = json_dumps(root, JSON_INDENT(1) | JSON_ENSURE_ASCII);
	if (!s)
		return -ENOMEM;
	int r = sb_puts(out, s) ?: sb_puts(out, "\n");
	free(s);
	return r;
}

static int manifest_check(const struct manifest *m, char *err, size_t errlen);

/* --- the document's own SHA-256 ----------------------------------------------------------
 * A manifest's last member, "manifest_sha256", is the SHA-256 of its bytes as written with
 * that value all zeros, so that a plain store's manifest damaged anywhere (a file's name, a
 * mode) is refused rather than restored as it reads. Manifests are never rewritten, so the
 * bytes are the ones hashed. One written before it has none; a key one bit away from it is
 * damage, not such a manifest. */
#define SELF_SUM_KEY "manifest_sha256"
#define SELF_SUM_ZEROS "0000000000000000000000000000000000000000000000000000000000000000"
#define SELF_SUM_AT "\"" SELF_SUM_KEY "\": \""

/* Where the value of the last SELF_SUM_KEY member of doc starts, or NULL. Inside a JSON string
 * a quote is escaped, so the pattern, quotes and all, is only ever a key. */
static const char *self_sum_at(const char *doc, size_t len)
{
	const char *found = NULL, *p = doc, *end = doc + len;
	size_t n = strlen(SELF_SUM_AT);
	while (p < end && (p = memmem(p, (size_t)(end - p), SELF_SUM_AT, n))) {
		found = p + n;
		p += n;
	}
	return found && end - found >= 64 ? found : NULL;
}

/* Writes the hash of doc (written with SELF_SUM_ZEROS) in place of the zeros. */
static int self_sum_seal(char *doc, size_t len)
{
	char *at = (char *)self_sum_at(doc, len);
	unsigned char sha[32];
	char hex[65];
	if (!at || memcmp(at, SELF_SUM_ZEROS, 64) != 0 || sha256_buf(doc, len, sha) < 0)
		return -EIO;
	hex_encode(sha, 32, hex);
	memcpy(at, hex, 64);
	return 0;
}

/* Does a key differ from SELF_SUM_KEY in one bit? */
static bool one_bit_from_self_sum(const char *key)
{
	if (strlen(key) != strlen(SELF_SUM_KEY))
		return false;
	unsigned bits = 0;
	for (size_t i = 0; key[i]; i++)
		bits += (unsigned)__builtin_popcount((unsigned char)(key[i] ^ SELF_SUM_KEY[i]));
	return bits == 1;
}

/* Checks doc (root: its JSON) against its own SHA-256, when it has one. */
static int self_sum_check(const char *doc, size_t len, json_t *root, struct perr *e)
{
	json_t *v = json_object_get(root, SELF_SUM_KEY);
	const char *key;
	json_t *any;
	if (!v) {
		json_object_foreach(root, key, any)
			if (one_bit_from_self_sum(key))
				return fail(e, "manifest: damaged (a key \"%s\" where \"%s\" was written)",
					    key, SELF_SUM_KEY);
		return 0;
	}
	const char *at = self_sum_at(doc, len), *want = json_string_value(v);
	if (!at || !want || strlen(want) != 64 || strncmp(at, want, 64) != 0)
		return fail(e, "manifest: damaged (\"%s\" is not where it was written)", SELF_SUM_KEY);
	sha256_ctx *h; /* of doc as written: the zeros in place of the value */
	unsigned char sha[32];
	char hex[65];
	int r = sha256_new(&h);
	r = r ?: sha256_update(h, doc, (size_t)(at - doc)) ?: sha256_update(h, SELF_SUM_ZEROS, 64) ?:
		sha256_update(h, at + 64, len - (size_t)(at - doc) - 64) ?: sha256_final(h, sha);
	sha256_free(h);
	if (r < 0)
		return r;
	hex_encode(sha, 32, hex);
	return memcmp(hex, want, 64) == 0 ? 0
		: fail(e, "manifest: damaged (its bytes do not hash to its \"%s\")", SELF_SUM_KEY);
}

static json_t *ring_json(const struct manifest_ring_node *ring, size_t n)
{
	json_t *a = json_array();
	int r = a ? 0 : -ENOMEM;
	for (size_t i = 0; !r && i < n; i++) {
		json_t *o = json_object();
		r = !o || json_array_append_new(a, o) ? -ENOMEM : 0;
		r = r ?: put_str(o, "host_id", ring[i].host_id) ?: put_str(o, "address", ring[i].address) ?:
			put_str(o, "datacenter", ring[i].datacenter) ?: put_str(o, "rack", ring[i].rack);
	}
	if (r) {
		json_decref(a);
		return NULL;
	}
	return a;
}

int manifest_ring_write(const struct manifest_ring_node *ring, size_t n, struct strbuf *out)
{
	json_t *a = ring_json(ring, n);
	if (!a)
		return -ENOMEM;
	char *s = json_dumps(a, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(a);
	int r = s ? sb_puts(out, s) : -ENOMEM;
	free(s);
	return r;
}

/* --- scope ---------------------------------------------------------------------------------- */

static const char *const system_keyspaces[] = {
	"system", "system_schema", "system_auth", "system_distributed", "system_traces",
	"system_views", "system_virtual_schema",
};

bool is_system_keyspace(const char *ks)
{
	for (size_t i = 0; i < sizeof(system_keyspaces) / sizeof(*system_keyspaces); i++)
		if (strcmp(ks, system_keyspaces[i]) == 0)
			return true;
	return false;
}

bool is_node_local_keyspace(const char *ks)
{
	return !strcmp(ks, "system") || !strcmp(ks, "system_schema") || !strcmp(ks, "system_views") ||
	       !strcmp(ks, "system_virtual_schema");
}

/* Order of entries: by keyspace, then the keyspace's own entry (table NULL), then by table. */
static int scope_cmp(const char *ks, const char *table, const struct manifest_scope_entry *e)
{
	int c = strcmp(ks, e->keyspace);
	if (c || (!table && !e->table))
		return c;
	return !table ? -1 : !e->table ? 1 : strcmp(table, e->table);
}

static bool scope_has_keyspace(const struct manifest_scope *s, const char *ks)
{
	for (size_t i = 0; i < s->n; i++)
		if (!s->v[i].table && !strcmp(s->v[i].keyspace, ks))
			return true;
	return false;
}

/* Drops the table entries of keyspace ks. */
static void scope_drop_tables(struct manifest_scope *s, const char *ks)
{
	size_t k = 0;
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i].table && !strcmp(s->v[i].keyspace, ks)) {
			free(s->v[i].keyspace);
			free(s->v[i].table);
		} else {
			s->v[k++] = s->v[i];
		}
	}
	s->n = k;
}

int manifest_scope_add(struct manifest_scope *s, const char *ks, const char *table)
{
	if (table && scope_has_keyspace(s, ks))
		return 0;
	size_t at = 0;
	while (at < s->n && scope_cmp(ks, table, &s->v[at]) > 0)
		at++;
	if (at < s->n && scope_cmp(ks, table, &s->v[at]) == 0)
		return 0;
	struct manifest_scope_entry e = {strdup(ks), table ? strdup(table) : NULL};
	struct manifest_scope_entry *v = realloc(s->v, (s->n + 1) * sizeof(*v));
	if (!e.keyspace || (table && !e.table) || !v) {
		free(e.keyspace);
		free(e.table);
		if (v)
			s->v = v;
		return -ENOMEM;
	}
	s->v = v;
	if (!table)
		scope_drop_tables(s, ks); /* before at: they sort after the keyspace's entry */
	memmove(&s->v[at + 1], &s->v[at], (s->n - at) * sizeof(*v));
	s->v[at] = e;
	s->n++;
	s->system = false;
	return 0;
}

static int scope_entry_cmp(const void *x, const void *y)
{
	const struct manifest_scope_entry *a = x;
	return scope_cmp(a->keyspace, a->table, y);
}

/* Sorts s and drops what manifest_scope_add would not have added: O(n log n), for a scope
 * read from a store (entries appended as they come). */
static void scope_canonicalize(struct manifest_scope *s)
{
	if (s->n)
		qsort(s->v, s->n, sizeof(*s->v), scope_entry_cmp);
	size_t k = 0;
	const char *listed = NULL; /* the keyspace whose own entry was kept last */
	for (size_t i = 0; i < s->n; i++) {
		struct manifest_scope_entry *e = &s->v[i];
		bool twice = k && scope_cmp(e->keyspace, e->table, &s->v[k - 1]) == 0;
		bool in_listed = e->table && listed && !strcmp(listed, e->keyspace);
		if (twice || in_listed) {
			free(e->keyspace);
			free(e->table);
			continue;
		}
		s->v[k++] = *e;
		if (!e->table)
			listed = s->v[k - 1].keyspace;
	}
	s->n = k;
	s->system = s->system && k == 0;
}

bool manifest_scope_equal(const struct manifest_scope *a, const struct manifest_scope *b)
{
	if (a->n != b->n || (a->n == 0 && a->system != b->system))
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (scope_cmp(a->v[i].keyspace, a->v[i].table, &b->v[i]) != 0)
			return false;
	return true;
}

int manifest_scope_copy(struct manifest_scope *dst, const struct manifest_scope *src)
{
	*dst = (struct manifest_scope){.system = src->system};
	for (size_t i = 0; i < src->n; i++)
		if (manifest_scope_add(dst, src->v[i].keyspace, src->v[i].table) < 0) {
			manifest_scope_free(dst);
			return -ENOMEM;
		}
	dst->system = src->n == 0 && src->system;
	return 0;
}

void manifest_scope_free(struct manifest_scope *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].keyspace);
		free(s->v[i].table);
	}
	free(s->v);
	*s = (struct manifest_scope){0};
}

static json_t *scope_json(const struct manifest_scope *s)
{
	json_t *o = json_object(), *a = json_array();
	if (!o || !a) {
		json_decref(o);
		json_decref(a);
		return NULL;
	}
	int r = json_object_set_new(o, "select", a) ? -ENOMEM : 0; /* a is o's, even on failure */
	r = r ?: json_object_set_new(o, "system", json_boolean(s->n == 0 && s->system)) ? -ENOMEM : 0;
	for (size_t i = 0; !r && i < s->n; i++) {
		json_t *e = json_object();
		r = !e || json_array_append_new(a, e) ? -ENOMEM : 0;
		r = r ?: put_name(e, "keyspace", s->v[i].keyspace);
		if (!r && s->v[i].table)
			r = put_name(e, "table", s->v[i].table);
	}
	if (r) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int manifest_scope_write(const struct manifest_scope *s, struct strbuf *out)
{
	json_t *o = scope_json(s);
	char *text = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	json_decref(o);
	int r = text ? sb_puts(out, text) : -ENOMEM;
	free(text);
	return r;
}

int manifest_write(const struct manifest *m, struct strbuf *out, char *err, size_t errlen)
{
	int r = manifest_check(m, err, errlen);
	if (r < 0)
		return -EINVAL;
	json_t *root = json_object(), *tokens = json_array(), *kss = json_array();
	r = (!root || !tokens || !kss) ? -ENOMEM : 0;
	r = r ?: put_int(root, "format", CB_FORMAT) ?: put_name(root, "name", m->name) ?:
		put_str(root, "node", m->node) ?: put_str(root, "cluster", m->cluster) ?:
		put_str(root, "datacenter", m->datacenter) ?: put_str(root, "host_id", m->host_id) ?:
		put_str(root, "snapshot_tag", m->snapshot_tag) ?:
		put_str(root, "cassandra_version", m->cassandra_version) ?:
		put_str(root, "rack", m->rack) ?: put_str(root, "schema_version", m->schema_version) ?:
		put_int(root, "created_ns", m->created_ns);
	if (!r && m->base)
		r = put_name(root, "base", m->base) ?: put_name(root, "previous", m->previous);
	json_t *ring = r ? NULL : ring_json(m->ring, m->nring);
	r = r ?: (!ring || json_object_set_new(root, "ring", ring)) ? -ENOMEM : 0;
	json_t *scope = r ? NULL : scope_json(&m->scope);
	r = r ?: (!scope || json_object_set_new(root, "scope", scope)) ? -ENOMEM : 0;
	if (!r && m->clears_links)
		r = json_object_set_new(root, "clears_links", json_true()) ? -ENOMEM : 0;
	if (!r && m->snapshot_ns > 0)
		r = put_int(root, "snapshot_ns", m->snapshot_ns);
	if (!r && m->commitlog_seen)
		r = put_int(root, "commitlog_seen_id", m->commitlog_seen_id);
	for (size_t i = 0; !r && i < m->ntokens; i++)
		r = json_array_append_new(tokens, json_string(m->tokens[i])) ? -ENOMEM : 0;
	json_t *rootattr = json_object();
	r = r ?: (!rootattr || json_object_set_new(root, "root", rootattr)) ? -ENOMEM : 0;
	r = r ?: put_attr(rootattr, &m->root_attr);
	json_t *stats = json_object();
	r = r ?: (!stats || json_object_set_new(root, "stats", stats)) ? -ENOMEM : 0;
	r = r ?: put_int(stats, "files", (int64_t)m->files) ?: put_int(stats, "bytes", (int64_t)m->bytes) ?:
		put_int(stats, "new_bytes", (int64_t)m->new_bytes) ?:
		put_int(stats, "stored_bytes", (int64_t)m->stored_bytes);
	for (size_t i = 0; !r && i < m->nkeyspaces; i++) {
		json_t *k = keyspace_json(&m->keyspaces[i]);
		r = !k || json_array_append_new(kss, k) ? -ENOMEM : 0;
	}
	if (!r && (json_object_set(root, "tokens", tokens) || json_object_set(root, "keyspaces", kss)))
		r = -ENOMEM;
	if (!r && m->nnode_files) {
		json_t *nf = json_array();
		r = !nf || json_object_set_new(root, "node_files", nf) ? -ENOMEM : 0;
		for (size_t i = 0; !r && i < m->nnode_files; i++) {
			json_t *f = file_json(&m->node_files[i]);
			r = !f || json_array_append_new(nf, f) ? -ENOMEM : 0;
		}
	}
	r = r ?: put_str(root, SELF_SUM_KEY, SELF_SUM_ZEROS);
	size_t start = out->len;
	r = r ?: dump(root, out) ?: self_sum_seal(out->buf + start, out->len - start);
	json_decref(tokens);
	json_decref(kss);
	json_decref(root);
	return r;
}

/* --- reading ----------------------------------------------------------------------------- */

static json_t *load(const char *buf, size_t len, struct perr *e, const char *what, int *r)
{
	json_error_t je;
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		*r = fail(e, "%s: not JSON (line %d: %s)", what, je.line, je.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		*r = fail(e, "%s: not a JSON object", what);
		return NULL;
	}
	*r = 0;
	return root;
}

static int get_int(json_t *o, const char *key, int64_t min, int64_t max, int64_t *out,
		   struct perr *e, const char *where)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v))
		return fail(e, "%s: \"%s\" is missing or not an integer", where, key);
	json_int_t x = json_integer_value(v);
	if (x < min || x > max)
		return fail(e, "%s: \"%s\" %lld is out of range", where, key, (long long)x);
	*out = x;
	return 0;
}

static int get_u64(json_t *o, const char *key, uint64_t *out, struct perr *e, const char *where)
{
	int64_t v = 0;
	int r = get_int(o, key, 0, (int64_t)CB_MAX_SIZE, &v, e, where);
	*out = (uint64_t)v;
	return r;
}

/* A string value, copied; "" when absent and optional. */
static int get_str(json_t *o, const char *key, bool optional, char **out, struct perr *e,
		   const char *where)
{
	json_t *v = json_object_get(o, key);
	if (!v && optional) {
		*out = strdup("");
		return *out ? 0 : -ENOMEM;
	}
	if (!json_is_string(v))
		return fail(e, "%s: \"%s\" is missing or not a string", where, key);
	*out = strndup(json_string_value(v), json_string_length(v));
	if (!*out)
		return -ENOMEM;
	if (strlen(*out) != json_string_length(v))
		return fail(e, "%s: \"%s\" contains a NUL byte", where, key);
	return 0;
}

/* A name: o[key] or o[key_hex]; always checked as one path component. */
/* o[key] or o[key_hex] (put_name), of max bytes at most. */
static int get_bytes(json_t *o, const char *key, size_t max, char **out, struct perr *e,
		     const char *where)
{
	char hkey[64];
	snprintf(hkey, sizeof(hkey), "%s_hex", key);
	json_t *hv = json_object_get(o, hkey);
	int r;
	if (hv) {
		const char *hex = json_string_value(hv);
		size_t n = hex ? strlen(hex) : 1;
		if (n % 2 || n > 2 * max)
			return fail(e, "%s: \"%s\" is not hex of %zu bytes at most", where, hkey, max);
		*out = calloc(1, n / 2 + 1);
		if (!*out)
			return -ENOMEM;
		if (hex_decode(hex, (unsigned char *)*out, n / 2) < 0 || strlen(*out) != n / 2)
			return fail(e, "%s: \"%s\" is not hex of %zu bytes at most", where, hkey, max);
	} else if ((r = get_str(o, key, false, out, e, where)) < 0) {
		return r;
	} else if (strlen(*out) > max) {
		return fail(e, "%s: \"%s\" is over %zu bytes", where, key, max);
	}
	return 0;
}

static int get_name(json_t *o, const char *key, char **out, struct perr *e, const char *where)
{
	int r = get_bytes(o, key, 255, out, e, where);
	if (r < 0)
		return r;
	if (!name_is_component(*out))
		return fail(e, "%s: \"%s\" is not a valid name (empty, \".\", \"..\", a '/' or over 255 bytes)",
			    where, key);
	return 0;
}

static int get_sha(json_t *o, unsigned char sha[32], struct perr *e, const char *where)
{
	const char *hex = json_string_value(json_object_get(o, "sha256"));
	if (!hex || strlen(hex) != 64 || hex_decode(hex, sha, 32) < 0)
		return fail(e, "%s: \"sha256\" is not 64 hex digits", where);
	return 0;
}

static int get_attr(json_t *o, struct cb_attr *a, struct perr *e, const char *where)
{
	int64_t mode = 0, uid = 0, gid = 0;
	int r = get_int(o, "mode", 0, 07777, &mode, e, where) ?:
		get_int(o, "uid", 0, UINT32_MAX - 1, &uid, e, where) ?:
		get_int(o, "gid", 0, UINT32_MAX - 1, &gid, e, where) ?:
		get_int(o, "mtime_ns", INT64_MIN, INT64_MAX, &a->mtime_ns, e, where);
	a->mode = (uint32_t)mode;
	a->uid = (uint32_t)uid;
	a->gid = (uint32_t)gid;
	return r;
}

/* The array o[key] (absent: empty when optional) and its length. */
static int get_array(json_t *o, const char *key, bool optional, json_t **arr, size_t *n,
		     struct perr *e, const char *where)
{
	*arr = json_object_get(o, key);
	*n = 0;
	if (!*arr && optional)
		return 0;
	if (!json_is_array(*arr))
		return fail(e, "%s: \"%s\" is missing or not an array", where, key);
	*n = json_array_size(*arr);
	return 0;
}

/* ".<index>": the one kind of subdirectory a table directory holds in a backup. */
static bool index_dir_ok(const char *d) { return name_is_component(d) && d[0] == '.'; }

/* The one subdirectory the node's own files have. */
static bool node_dir_ok(const char *d) { return !*d || !strcmp(d, MANIFEST_CONF_DIR); }

/* A file of a table (node false) or of the node (node_files: node true). */
static int parse_file(json_t *o, struct manifest_file *f, bool node, struct perr *e,
		      const char *where)
{
	if (!json_is_object(o))
		return fail(e, "%s: a file entry is not an object", where);
	int r = json_object_get(o, "dir") || json_object_get(o, "dir_hex")
			? get_name(o, "dir", &f->dir, e, where)
			: ((f->dir = strdup("")) ? 0 : -ENOMEM);
	if (r < 0)
		return r;
	if (node && !node_dir_ok(f->dir))
		return fail(e, "%s: directory \"%s\" is not " MANIFEST_CONF_DIR, where, f->dir);
	if (!node && *f->dir && !index_dir_ok(f->dir))
		return fail(e, "%s: index directory \"%s\" does not start with '.'", where, f->dir);
	json_t *added = json_object_get(o, "added");
	if (added && !json_is_boolean(added))
		return fail(e, "%s: \"added\" is not true or false", where);
	f->added = added && json_is_true(added);
	return get_name(o, "name", &f->name, e, where) ?: get_u64(o, "size", &f->size, e, where) ?:
	       get_attr(o, &f->attr, e, where) ?: get_sha(o, f->sha256, e, where);
}

static int cmp_file(const void *a, const void *b)
{
	const struct manifest_file *x = *(const struct manifest_file *const *)a;
	const struct manifest_file *y = *(const struct manifest_file *const *)b;
	return strcmp(x->dir, y->dir) ?: strcmp(x->name, y->name);
}

/* One of the n elements of v (each size bytes) that cmp (which compares pointers to
 * elements) finds equal to another, into *twice (NULL: none). 0 or -ENOMEM. */
static int find_twice(const void *v, size_t n, size_t size, int (*cmp)(const void *, const void *),
		      const void **twice)
{
	*twice = NULL;
	if (n < 2)
		return 0;
	const void **p = malloc(n * sizeof(*p));
	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		p[i] = (const char *)v + i * size;
	qsort(p, n, sizeof(*p), cmp);
	for (size_t i = 1; i < n && !*twice; i++)
		if (!cmp(&p[i - 1], &p[i]))
			*twice = p[i];
	free(p);
	return 0;
}

/* Two files of one table under the same directory and name would make the tree ambiguous. */
static int check_unique(const struct manifest_file *files, size_t n, struct perr *e,
			const char *where)
{
	const void *twice;
	int r = find_twice(files, n, sizeof(*files), cmp_file, &twice);
	const struct manifest_file *f = twice;
	return r ?: f ? fail(e, "%s: file \"%s%s%s\" appears twice", where, f->dir, *f->dir ? "/" : "",
			     f->name) : 0;
}

static int cmp_dir(const void *a, const void *b)
{
	return strcmp((*(const struct manifest_dir *const *)a)->name,
		      (*(const struct manifest_dir *const *)b)->name);
}

/* No index directory listed twice: the catalog has one row per directory of a table. */
static int check_unique_dirs(const struct manifest_dir *dirs, size_t n, struct perr *e,
			     const char *where)
{
	const void *twice;
	int r = find_twice(dirs, n, sizeof(*dirs), cmp_dir, &twice);
	const struct manifest_dir *d = twice;
	return r ?: d ? fail(e, "%s: index directory \"%s\" appears twice", where, d->name) : 0;
}

static bool is_table_id(const char *s)
{
	size_t n = strlen(s);
	unsigned char tmp[16];
	return n == 0 || (n == 32 && hex_decode(s, tmp, 16) == 0);
}

/* "links": optional; the "taken" count an older cassbackup wrote is no record of them. */
static int parse_links(json_t *o, struct manifest_table *t, struct perr *e, const char *where)
{
	json_t *a = NULL;
	int r = get_array(o, "links", true, &a, &t->nlinks, e, where);
	if (r < 0 || !t->nlinks)
		return r;
	t->links = calloc(t->nlinks, sizeof(*t->links));
	if (!t->links)
		return -ENOMEM;
	for (size_t i = 0; !r && i < t->nlinks; i++) {
		json_t *l = json_array_get(a, i);
		if (!json_is_object(l))
			return fail(e, "%s: a links entry is not an object", where);
		r = get_bytes(l, "dir", PATH_MAX, &t->links[i].dir, e, where) ?:
		    get_str(l, "left", false, &t->links[i].left, e, where);
		if (!r && json_object_get(l, "found"))
			r = get_str(l, "found", false, &t->links[i].found, e, where);
	}
	return r;
}

static int parse_table(json_t *o, struct manifest_table *t, struct perr *e, const char *ks)
{
	char where[320];
	snprintf(where, sizeof(where), "keyspace %s: a table", ks);
	if (!json_is_object(o))
		return fail(e, "%s is not an object", where);
	int r = get_name(o, "name", &t->name, e, where);
	if (r < 0)
		return r;
	snprintf(where, sizeof(where), "table %s.%s", ks, t->name);
	json_t *dirs = NULL, *files = NULL;
	r = get_str(o, "id", true, &t->id, e, where) ?: get_attr(o, &t->attr, e, where) ?:
	    get_array(o, "dirs", true, &dirs, &t->ndirs, e, where) ?:
	    get_array(o, "files", false, &files, &t->nfiles, e, where);
	if (r < 0)
		return r;
	if (!is_table_id(t->id))
		return fail(e, "%s: \"id\" is not 32 hex digits", where);
	json_t *cql = json_object_get(o, "schema_cql");
	if (cql && (r = get_str(o, "schema_cql", false, &t->schema_cql, e, where)) < 0)
		return r;
	if ((r = parse_links(o, t, e, where)) < 0)
		return r;
	t->emptied_ms = -1;
	if (json_object_get(o, "emptied_ms") &&
	    (r = get_int(o, "emptied_ms", 0, INT64_MAX, &t->emptied_ms, e, where)) < 0)
		return r;
	t->dirs = calloc(t->ndirs + 1, sizeof(*t->dirs));
	t->files = calloc(t->nfiles + 1, sizeof(*t->files));
	if (!t->dirs || !t->files)
		return -ENOMEM;
	for (size_t i = 0; i < t->ndirs && !r; i++) {
		json_t *d = json_array_get(dirs, i);
		r = !json_is_object(d) ? fail(e, "%s: a dir entry is not an object", where)
				       : get_name(d, "name", &t->dirs[i].name, e, where) ?:
					 get_attr(d, &t->dirs[i].attr, e, where);
		if (!r && !index_dir_ok(t->dirs[i].name))
			r = fail(e, "%s: index directory \"%s\" does not start with '.'", where,
				 t->dirs[i].name);
	}
	r = r ?: check_unique_dirs(t->dirs, t->ndirs, e, where);
	for (size_t i = 0; i < t->nfiles && !r; i++)
		r = parse_file(json_array_get(files, i), &t->files[i], false, e, where);
	return r ?: check_unique(t->files, t->nfiles, e, where);
}

static int parse_keyspace(json_t *o, struct manifest_keyspace *k, struct perr *e)
{
	if (!json_is_object(o))
		return fail(e, "manifest: a keyspace is not an object");
	int r = get_name(o, "name", &k->name, e, "manifest: a keyspace");
	if (r < 0)
		return r;
	char where[300];
	snprintf(where, sizeof(where), "keyspace %s", k->name);
	json_t *tables = NULL;
	r = get_attr(o, &k->attr, e, where) ?:
	    get_array(o, "tables", false, &tables, &k->ntables, e, where);
	if (r < 0)
		return r;
	k->tables = calloc(k->ntables + 1, sizeof(*k->tables));
	if (!k->tables)
		return -ENOMEM;
	for (size_t i = 0; i < k->ntables && !r; i++)
		r = parse_table(json_array_get(tables, i), &k->tables[i], e, k->name);
	for (size_t i = 1; i < k->ntables && !r; i++)
		for (size_t j = 0; j < i && !r; j++)
			if (!strcmp(k->tables[i].name, k->tables[j].name))
				r = fail(e, "%s: table \"%s\" appears twice", where, k->tables[i].name);
	return r;
}

static int parse_header(json_t *root, struct manifest *m, struct perr *e)
{
	const char *w = "manifest";
	int64_t format = 0;
	int r = get_int(root, "format", INT64_MIN, INT64_MAX, &format, e, w);
	if (r < 0)
		return r;
	if (format != CB_FORMAT)
		return fail(e, "manifest: format %lld, this cassbackup reads format %d",
			    (long long)format, CB_FORMAT);
	r = get_name(root, "name", &m->name, e, w) ?: get_str(root, "node", true, &m->node, e, w) ?:
	    get_str(root, "cluster", true, &m->cluster, e, w) ?:
	    get_str(root, "datacenter", true, &m->datacenter, e, w) ?:
	    get_str(root, "host_id", true, &m->host_id, e, w) ?:
	    get_str(root, "snapshot_tag", true, &m->snapshot_tag, e, w) ?:
	    get_str(root, "cassandra_version", true, &m->cassandra_version, e, w) ?:
	    get_str(root, "rack", true, &m->rack, e, w) ?:
	    get_str(root, "schema_version", true, &m->schema_version, e, w) ?:
	    get_int(root, "created_ns", INT64_MIN, INT64_MAX, &m->created_ns, e, w);
	if (r < 0)
		return r;
	if (json_object_get(root, "base") || json_object_get(root, "base_hex"))
		r = get_name(root, "base", &m->base, e, w) ?: get_name(root, "previous", &m->previous, e, w);
	if (r < 0)
		return r;
	json_t *clears = json_object_get(root, "clears_links");
	if (clears && !json_is_boolean(clears))
		return fail(e, "manifest: \"clears_links\" is not true or false");
	m->clears_links = clears && json_is_true(clears);
	if (json_object_get(root, "snapshot_ns") &&
	    (r = get_int(root, "snapshot_ns", 0, INT64_MAX, &m->snapshot_ns, e, w)) < 0)
		return r;
	if ((m->commitlog_seen = json_object_get(root, "commitlog_seen_id") != NULL) &&
	    (r = get_int(root, "commitlog_seen_id", -1, INT64_MAX - 1, &m->commitlog_seen_id, e, w)) < 0)
		return r;
	const char *labels[] = {m->node, m->cluster, m->datacenter, m->host_id, m->rack,
				m->schema_version, m->cassandra_version};
	for (size_t i = 0; i < sizeof(labels) / sizeof(*labels); i++)
		if (!manifest_label_ok(labels[i]))
			return fail(e, "manifest: a node label (node, cluster, datacenter, host id, rack, "
				       "versions) is over 255 bytes or holds a control character");
	json_t *ra = json_object_get(root, "root");
	if (!json_is_object(ra))
		return fail(e, "manifest: \"root\" is missing or not an object");
	json_t *st = json_object_get(root, "stats");
	if (!json_is_object(st))
		return fail(e, "manifest: \"stats\" is missing or not an object");
	r = get_attr(ra, &m->root_attr, e, "manifest root") ?:
	    get_u64(st, "files", &m->files, e, "manifest stats") ?:
	    get_u64(st, "bytes", &m->bytes, e, "manifest stats") ?:
	    get_u64(st, "new_bytes", &m->new_bytes, e, "manifest stats") ?:
	    get_u64(st, "stored_bytes", &m->stored_bytes, e, "manifest stats");
	return r;
}

static int parse_tokens(json_t *root, struct manifest *m, struct perr *e)
{
	json_t *arr;
	int r = get_array(root, "tokens", true, &arr, &m->ntokens, e, "manifest");
	if (r < 0)
		return r;
	m->tokens = calloc(m->ntokens + 1, sizeof(*m->tokens));
	if (!m->tokens)
		return -ENOMEM;
	for (size_t i = 0; i < m->ntokens; i++) {
		const char *s = json_string_value(json_array_get(arr, i));
		if (!s)
			return fail(e, "manifest: a token is not a string");
		if (!(m->tokens[i] = strdup(s)))
			return -ENOMEM;
	}
	return 0;
}

/* The array of ring nodes in arr (NULL: none). */
static int parse_ring(json_t *arr, struct manifest_ring_node **ring, size_t *n, struct perr *e)
{
	*n = arr ? json_array_size(arr) : 0;
	*ring = calloc(*n + 1, sizeof(**ring));
	if (!*ring)
		return -ENOMEM;
	int r = 0;
	for (size_t i = 0; !r && i < *n; i++) {
		json_t *o = json_array_get(arr, i);
		struct manifest_ring_node *x = &(*ring)[i];
		const char *w = "manifest: a ring node";
		r = !json_is_object(o) ? fail(e, "%s is not an object", w)
				       : get_str(o, "host_id", false, &x->host_id, e, w) ?:
					 get_str(o, "address", false, &x->address, e, w) ?:
					 get_str(o, "datacenter", false, &x->datacenter, e, w) ?:
					 get_str(o, "rack", false, &x->rack, e, w);
		if (!r && (!manifest_label_ok(x->host_id) || !manifest_label_ok(x->address) ||
			   !manifest_label_ok(x->datacenter) || !manifest_label_ok(x->rack)))
			r = fail(e, "%s: a label is over 255 bytes or holds a control character", w);
		if (!r && !*x->host_id && !*x->address)
			r = fail(e, "%s has neither host id nor address", w);
		for (size_t j = 0; !r && j < i; j++)
			if ((*x->host_id && !strcmp(x->host_id, (*ring)[j].host_id)) ||
			    (*x->address && !strcmp(x->address, (*ring)[j].address)))
				r = fail(e, "%s: host id %s or address %s appears twice", w, x->host_id,
					 x->address);
	}
	return r;
}

int manifest_ring_parse(const char *text, struct manifest_ring_node **ring, size_t *n, char *err,
			size_t errlen)
{
	struct perr e = {err, errlen};
	json_error_t je;
	*ring = NULL;
	*n = 0;
	json_t *a = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	int r = !json_is_array(a) ? fail(&e, "ring: not a JSON array") : parse_ring(a, ring, n, &e);
	json_decref(a);
	if (r < 0) {
		manifest_ring_free(*ring, *n);
		*ring = NULL;
		*n = 0;
	}
	return r;
}

void manifest_ring_free(struct manifest_ring_node *ring, size_t n)
{
	for (size_t i = 0; ring && i < n; i++) {
		free(ring[i].host_id);
		free(ring[i].address);
		free(ring[i].datacenter);
		free(ring[i].rack);
	}
	free(ring);
}

const char *manifest_node_key(const struct manifest *m)
{
	return m->host_id && *m->host_id ? m->host_id : m->node ? m->node : "";
}

int64_t manifest_time_ns(int64_t created_ns, int64_t snapshot_ns)
{
	return snapshot_ns > 0 && snapshot_ns < created_ns ? snapshot_ns : created_ns;
}

bool manifest_node_key_ok(const char *key)
{
	size_t n = strlen(key);
	if (!name_is_component(key) || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (key[i] <= ' ' || key[i] >= 0x7f)
			return false;
	return true;
}

int host_id_canonical(const char *in, char out[37])
{
	if (strlen(in) != 36)
		return -EINVAL;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? in[i] != '-' : !isxdigit((unsigned char)in[i]))
			return -EINVAL;
		out[i] = (char)tolower((unsigned char)in[i]);
	}
	out[36] = '\0';
	return 0;
}

bool manifest_node_key_same(const char *a, const char *b)
{
	char ca[37], cb[37];
	return !strcmp(a, b) ||
	       (host_id_canonical(a, ca) == 0 && host_id_canonical(b, cb) == 0 && !strcmp(ca, cb));
}

bool manifest_label_ok(const char *s)
{
	if (!s)
		return true;
	size_t n = strlen(s);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < ' ' || s[i] == 0x7f)
			return false;
	return n <= 255;
}

/* "scope" (absent in a manifest written before scopes were recorded: every table, the system
 * keyspaces too when it holds one, as cassbackup backup made them: manifest_parse). */
static int parse_scope(json_t *root, struct manifest_scope *s, struct perr *e)
{
	const char *w = "manifest: scope";
	json_t *o = json_object_get(root, "scope");
	if (!o)
		return 0;
	json_t *sys = json_object_get(o, "system"), *sel = NULL;
	size_t n = 0;
	if (!json_is_object(o) || !json_is_boolean(sys))
		return fail(e, "%s: not an object with \"system\" true or false", w);
	int r = get_array(o, "select", false, &sel, &n, e, w);
	if (r == 0 && n && !(s->v = calloc(n, sizeof(*s->v))))
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < n; i++) {
		json_t *entry = json_array_get(sel, i);
		struct manifest_scope_entry *v = &s->v[s->n];
		if (!json_is_object(entry))
			r = fail(e, "%s: an entry is not an object", w);
		r = r ?: get_name(entry, "keyspace", &v->keyspace, e, w);
		if (r == 0 && (json_object_get(entry, "table") || json_object_get(entry, "table_hex")))
			r = get_name(entry, "table", &v->table, e, w);
		if (v->keyspace || v->table)
			s->n++; /* freed with s, taken or not */
	}
	s->system = json_is_true(sys);
	if (r == 0)
		scope_canonicalize(s);
	return r;
}

/* A manifest from before scopes: unrecorded, the system keyspaces in it when it holds one. */
static void scope_of_old_manifest(json_t *root, struct manifest *m)
{
	m->scope_unrecorded = !json_object_get(root, "scope");
	for (size_t i = 0; m->scope_unrecorded && i < m->nkeyspaces; i++)
		m->scope.system = m->scope.system || is_system_keyspace(m->keyspaces[i].name);
}

int manifest_scope_read(const char *text, struct manifest_scope *out)
{
	char err[160];
	struct perr e = {err, sizeof(err)};
	int r;
	*out = (struct manifest_scope){0};
	json_t *o = load(text, strlen(text), &e, "scope", &r);
	if (!o)
		return r;
	json_t *root = json_object();
	if (!root)
		json_decref(o);
	r = !root || json_object_set_new(root, "scope", o) ? -ENOMEM : 0; /* o is root's now */
	r = r ?: parse_scope(root, out, &e);
	json_decref(root);
	if (r < 0)
		manifest_scope_free(out);
	return r;
}

int manifest_parse(const char *buf, size_t len, struct manifest **out, char *err, size_t errlen)
{
	struct perr e = {err, errlen};
	*out = NULL;
	int r;
	json_t *root = load(buf, len, &e, "manifest", &r);
	if (!root)
		return r;
	if ((r = self_sum_check(buf, len, root, &e)) < 0) {
		json_decref(root);
		if (r == -ENOMEM && err && errlen)
			snprintf(err, errlen, "manifest: out of memory");
		return r;
	}
	struct manifest *m = calloc(1, sizeof(*m));
	json_t *kss = NULL;
	json_t *ring = NULL;
	size_t nring = 0;
	r = !m ? -ENOMEM : parse_header(root, m, &e) ?: parse_tokens(root, m, &e) ?:
	    get_array(root, "ring", true, &ring, &nring, &e, "manifest") ?:
	    parse_ring(ring, &m->ring, &m->nring, &e) ?: parse_scope(root, &m->scope, &e) ?:
	    get_array(root, "keyspaces", false, &kss, &m->nkeyspaces, &e, "manifest");
	if (!r && !(m->keyspaces = calloc(m->nkeyspaces + 1, sizeof(*m->keyspaces))))
		r = -ENOMEM;
	for (size_t i = 0; !r && i < m->nkeyspaces; i++)
		r = parse_keyspace(json_array_get(kss, i), &m->keyspaces[i], &e);
	for (size_t i = 1; !r && i < m->nkeyspaces; i++)
		for (size_t j = 0; j < i && !r; j++)
			if (!strcmp(m->keyspaces[i].name, m->keyspaces[j].name))
				r = fail(&e, "manifest: keyspace \"%s\" appears twice",
					 m->keyspaces[i].name);
	if (!r)
		scope_of_old_manifest(root, m);
	json_t *nf = NULL;
	r = r ?: get_array(root, "node_files", true, &nf, &m->nnode_files, &e, "manifest");
	if (!r && !(m->node_files = calloc(m->nnode_files + 1, sizeof(*m->node_files))))
		r = -ENOMEM;
	for (size_t i = 0; !r && i < m->nnode_files; i++)
		r = parse_file(json_array_get(nf, i), &m->node_files[i], true, &e, "manifest: node files");
	r = r ?: check_unique(m->node_files, m->nnode_files, &e, "manifest: node files");
	json_decref(root);
	if (r < 0) {
		if (r == -ENOMEM && err && errlen)
			snprintf(err, errlen, "manifest: out of memory");
		manifest_free(m);
		return r;
	}
	*out = m;
	return 0;
}

static int check_table(const char *ks, const struct manifest_table *t, char *err, size_t errlen)
{
	if (!name_is_component(t->name) || !is_table_id(t->id)) {
		snprintf(err, errlen, "table %s.%s: invalid name or id", ks, t->name);
		return -EINVAL;
	}
	for (size_t i = 0; i < t->ndirs; i++)
		if (!index_dir_ok(t->dirs[i].name)) {
			snprintf(err, errlen, "table %s.%s: invalid index directory name", ks, t->name);
			return -EINVAL;
		}
	for (size_t i = 0; i < t->nfiles; i++) {
		const struct manifest_file *f = &t->files[i];
		if (!name_is_component(f->name) || (*f->dir && !index_dir_ok(f->dir)) ||
		    f->size > CB_MAX_SIZE || f->attr.mode > 07777) {
			snprintf(err, errlen, "table %s.%s: file has an invalid name, size or mode", ks,
				 t->name);
			return -EINVAL;
		}
	}
	return 0;
}

/* The rules manifest_parse enforces, applied before writing, so that nothing can commit a
 * manifest that no reader would accept. */
static int manifest_check(const struct manifest *m, char *err, size_t errlen)
{
	if (!name_is_component(m->name)) {
		snprintf(err, errlen, "backup name is not a valid name");
		return -EINVAL;
	}
	if (!m->base != !m->previous || (m->base && (!name_is_component(m->base) ||
						    !name_is_component(m->previous)))) {
		snprintf(err, errlen, "an incremental's base or previous backup is not a valid name");
		return -EINVAL;
	}
	const char *labels[] = {m->node, m->cluster, m->datacenter, m->host_id, m->rack,
				m->schema_version, m->cassandra_version};
	for (size_t i = 0; i < sizeof(labels) / sizeof(*labels); i++)
		if (!manifest_label_ok(labels[i])) {
			snprintf(err, errlen, "a node label is over 255 bytes or holds a control character");
			return -EINVAL;
		}
	for (size_t i = 0; i < m->nring; i++)
		if (!manifest_label_ok(m->ring[i].host_id) || !manifest_label_ok(m->ring[i].address) ||
		    !manifest_label_ok(m->ring[i].datacenter) || !manifest_label_ok(m->ring[i].rack)) {
			snprintf(err, errlen, "a ring node's label is over 255 bytes or holds a control character");
			return -EINVAL;
		}
	for (size_t i = 0; i < m->nkeyspaces; i++) {
		const struct manifest_keyspace *k = &m->keyspaces[i];
		if (!name_is_component(k->name)) {
			snprintf(err, errlen, "a keyspace name is not a valid name");
			return -EINVAL;
		}
		for (size_t j = 0; j < k->ntables; j++) {
			int r = check_table(k->name, &k->tables[j], err, errlen);
			if (r < 0)
				return r;
		}
	}
	for (size_t i = 0; i < m->nnode_files; i++) {
		const struct manifest_file *f = &m->node_files[i];
		if (!name_is_component(f->name) || !node_dir_ok(f->dir) || f->size > CB_MAX_SIZE ||
		    f->attr.mode > 07777) {
			snprintf(err, errlen, "node file %s: invalid name, directory, size or mode", f->name);
			return -EINVAL;
		}
	}
	struct perr e = {err, errlen};
	return check_unique(m->node_files, m->nnode_files, &e, "node files") < 0 ? -EINVAL : 0;
}

const struct manifest_file *manifest_node_file(const struct manifest *m, const char *dir,
					       const char *name)
{
	for (size_t i = 0; i < m->nnode_files; i++)
		if (!strcmp(m->node_files[i].dir, dir) && !strcmp(m->node_files[i].name, name))
			return &m->node_files[i];
	return NULL;
}

static void table_free(struct manifest_table *t)
{
	free(t->name);
	free(t->id);
	free(t->schema_cql);
	for (size_t i = 0; t->dirs && i < t->ndirs; i++)
		free(t->dirs[i].name);
	for (size_t i = 0; t->files && i < t->nfiles; i++) {
		free(t->files[i].dir);
		free(t->files[i].name);
	}
	manifest_links_free(t->links, t->nlinks);
	free(t->dirs);
	free(t->files);
}

void manifest_links_free(struct manifest_links *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].dir);
		free(v[i].left);
		free(v[i].found);
	}
	free(v);
}

void manifest_free(struct manifest *m)
{
	if (!m)
		return;
	for (size_t i = 0; m->keyspaces && i < m->nkeyspaces; i++) {
		struct manifest_keyspace *k = &m->keyspaces[i];
		for (size_t j = 0; k->tables && j < k->ntables; j++)
			table_free(&k->tables[j]);
		free(k->tables);
		free(k->name);
	}
	free(m->keyspaces);
	for (size_t i = 0; m->node_files && i < m->nnode_files; i++) {
		free(m->node_files[i].dir);
		free(m->node_files[i].name);
	}
	free(m->node_files);
	for (size_t i = 0; m->tokens && i < m->ntokens; i++)
		free(m->tokens[i]);
	free(m->tokens);
	free(m->name);
	free(m->node);
	free(m->cluster);
	free(m->datacenter);
	free(m->host_id);
	free(m->snapshot_tag);
	free(m->cassandra_version);
	free(m->rack);
	free(m->schema_version);
	free(m->base);
	free(m->previous);
	manifest_scope_free(&m->scope);
	manifest_ring_free(m->ring, m->nring);
	free(m);
}

/* --- pack index -------------------------------------------------------------------------- */

int pack_index_write(const struct pack_index *pi, struct strbuf *out)
{
	json_t *root = json_object(), *blobs = json_array();
	int r = (!root || !blobs) ? -ENOMEM : put_int(root, "format", CB_FORMAT);
	for (size_t i = 0; !r && i < pi->nblobs; i++) {
		json_t *b = json_object();
		r = !b || json_array_append_new(blobs, b) ? -ENOMEM : 0;
		r = r ?: put_sha(b, pi->blobs[i].sha256) ?: put_int(b, "size", (int64_t)pi->blobs[i].size) ?:
		    put_int(b, "offset", (int64_t)pi->blobs[i].offset);
	}
	if (!r && json_object_set(root, "blobs", blobs))
		r = -ENOMEM;
	r = r ?: dump(root, out);
	json_decref(blobs);
	json_decref(root);
	return r;
}

static int cmp_blob(const void *a, const void *b)
{
	return memcmp(((const struct pack_blob *)a)->sha256, ((const struct pack_blob *)b)->sha256, 32);
}

int pack_index_parse(const char *buf, size_t len, struct pack_index *out, char *err, size_t errlen)
{
	struct perr e = {err, errlen};
	memset(out, 0, sizeof(*out));
	int r;
	json_t *root = load(buf, len, &e, "pack index", &r);
	if (!root)
		return r;
	int64_t format = 0;
	json_t *blobs = NULL;
	r = get_int(root, "format", INT64_MIN, INT64_MAX, &format, &e, "pack index");
	if (!r && format != CB_FORMAT)
		r = fail(&e, "pack index: format %lld, this cassbackup reads format %d",
			 (long long)format, CB_FORMAT);
	r = r ?: get_array(root, "blobs", false, &blobs, &out->nblobs, &e, "pack index");
	if (!r && !(out->blobs = calloc(out->nblobs + 1, sizeof(*out->blobs))))
		r = -ENOMEM;
	for (size_t i = 0; !r && i < out->nblobs; i++) {
		json_t *b = json_array_get(blobs, i);
		struct pack_blob *pb = &out->blobs[i];
		r = !json_is_object(b) ? fail(&e, "pack index: a blob is not an object")
				       : get_sha(b, pb->sha256, &e, "pack index") ?:
					 get_u64(b, "size", &pb->size, &e, "pack index") ?:
					 get_u64(b, "offset", &pb->offset, &e, "pack index");
	}
	json_decref(root);
	if (!r && out->nblobs > 1) {
		struct pack_blob *sorted = malloc(out->nblobs * sizeof(*sorted));
		if (!sorted)
			r = -ENOMEM;
		else {
			memcpy(sorted, out->blobs, out->nblobs * sizeof(*sorted));
			qsort(sorted, out->nblobs, sizeof(*sorted), cmp_blob);
			for (size_t i = 1; i < out->nblobs && !r; i++)
				if (!cmp_blob(&sorted[i - 1], &sorted[i]))
					r = fail(&e, "pack index: a blob appears twice");
			free(sorted);
		}
	}
	if (r < 0)
		pack_index_free(out);
	return r;
}

void pack_index_free(struct pack_index *pi)
{
	free(pi->blobs);
	pi->blobs = NULL;
	pi->nblobs = 0;
}

/* --- store config ------------------------------------------------------------------------ */

int store_config_write(const struct store_config *c, struct strbuf *out)
{
	json_t *root = json_object();
	int r = !root ? -ENOMEM : put_str(root, "store", "cassbackup") ?: put_int(root, "format", c->format) ?:
				   put_str(root, "id", c->id) ?: put_int(root, "created_ns", c->created_ns);
	if (r == 0 && c->crypt_chunk) {
		json_t *enc = json_pack("{s:s, s:I}", "cipher", "AES-256-GCM", "chunk",
					(json_int_t)c->crypt_chunk);
		r = enc && json_object_set_new(root, "encryption", enc) == 0 ? 0 : -ENOMEM;
	}
	r = r ?: dump(root, out);
	json_decref(root);
	return r;
}

int store_config_parse(const char *buf, size_t len, struct store_config *c, char *err,
		       size_t errlen)
{
	struct perr e = {err, errlen};
	memset(c, 0, sizeof(*c));
	int r;
	json_t *root = load(buf, len, &e, "store config", &r);
	if (!root)
		return r;
	const char *magic = json_string_value(json_object_get(root, "store"));
	const char *id = json_string_value(json_object_get(root, "id"));
	int64_t format = 0;
	unsigned char raw[16];
	if (!magic || strcmp(magic, "cassbackup"))
		r = fail(&e, "store config: not a cassbackup store");
	r = r ?: get_int(root, "format", 1, 1000000, &format, &e, "store config");
	c->format = (int)format;
	if (!r && format != CB_FORMAT)
		r = -EPROTONOSUPPORT;
	if (!r && (!id || strlen(id) != 32 || hex_decode(id, raw, 16) < 0))
		r = fail(&e, "store config: \"id\" is not 32 hex digits");
	if (!r)
		memcpy(c->id, id, 33);
	r = r ?: get_int(root, "created_ns", INT64_MIN, INT64_MAX, &c->created_ns, &e, "store config");
	json_t *enc = json_object_get(root, "encryption");
	if (r == 0 && enc) {
		const char *cipher = json_string_value(json_object_get(enc, "cipher"));
		int64_t chunk = 0;
		if (!json_is_object(enc))
			r = fail(&e, "store config: \"encryption\" is not an object");
		r = r ?: get_int(enc, "chunk", 1024, 1 << 20, &chunk, &e, "store config: encryption");
		if (r == 0 && (!cipher || strcmp(cipher, "AES-256-GCM"))) {
			if (err && errlen)
				snprintf(err, errlen, "store encrypted with %s, this cassbackup knows AES-256-GCM",
					 cipher ? cipher : "an unnamed cipher");
			json_decref(root);
			return -EPROTONOSUPPORT;
		}
		c->crypt_chunk = (uint32_t)chunk;
	}
	if (r == -EPROTONOSUPPORT && err && errlen)
		snprintf(err, errlen, "store format %d, this cassbackup reads format %d", c->format,
			 CB_FORMAT);
	json_decref(root);
	return r;
}
