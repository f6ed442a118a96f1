/* cassbackup verify: read backups back and check them the way Cassandra would.
 *
 * Every byte is read out of the packs (not taken on the catalog's word) and checked against the
 * SHA-256 and size recorded at backup time (catalog/readback.h); then Cassandra's own checks:
 * each Data.db against its Digest.crc32 / Digest.adler32 / Digest.sha1, every component TOC.txt
 * lists is present, every Data.db that manifest.json lists is present. With --dir, a restored
 * table directory is checked against the backup instead (an sstable restored under a new
 * generation counts).
 *
 * plan (options, the backups and tables to check) -> execute (one table at a time: load its
 * files, map them to --dir, read and check) -> report (one result per table as it is done).
 */
#include "cli.h"
#include "cluster.h"
#include "store.h"
#include "hash.h"
#include "packread.h"
#include "readback.h"
#include "sstable.h"
#include "backup_files.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEEP_BELOW (1u << 20) /* small files kept in memory for the TOC/digest/manifest checks */

struct table_result {
	const char *keyspace, *table; /* both "" for the backup's own files */
	size_t files;
	uint64_t bytes;
	size_t renamed;
	bool imported;                  /* --imported */
	size_t rewritten, not_imported; /* Statistics.db rewritten (Cassandra: import, repair);
					 * --imported: files not taken */
	size_t resampled;               /* Summary.db saved again (index summary resampled) */
	struct strv errors; /* one problem each, unescaped (escaped when printed) */
	size_t nerrors;     /* errors.n, unless out of memory lost some of the texts */
};

static const char *error_text(const struct table_result *t, size_t i)
{
	return i < t->errors.n ? t->errors.v[i] : "(out of memory)";
}

static void add_error(struct table_result *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_error(struct table_result *t, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	strv_push(&t->errors, line);
	t->nerrors++;
}

static const char *rel(const struct vf *f, char *buf, size_t n)
{
	snprintf(buf, n, "%s%s%s", f->dir, *f->dir ? "/" : "", f->name);
	return buf;
}

static bool is_data(const char *name)
{
	size_t p = sstable_prefix_len(name);
	return p && !strcmp(name + p, "Data.db");
}

static struct vf *find(struct vf *v, size_t n, const char *dir, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].dir, dir) && !strcmp(v[i].name, name))
			return &v[i];
	return NULL;
}

/* What every read shares: the readback (the store's packs, one hash context, one buffer). */
struct reader {
	readback *rb;
	struct store *st;
	const char *store;
};

/* Opens f's file in --dir and gets its size: -errno with why set. */
static int open_source(const struct vf *f, uint64_t *size, struct strbuf *why)
{
	int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK); /* a FIFO: no wait */
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int r = -errno;
		sb_puts(why, strerror(-r));
		if (fd >= 0)
			close(fd);
		return r;
	}
	*size = (uint64_t)st.st_size;
	return fd;
}

/* Where the bytes of a file go as they are read: the Cassandra checksums of a Data.db, and the
 * whole of a small file. */
struct keep {
	struct vf *f;
	bool data;
	uint64_t off;
};

static int keep_bytes(void *ctx, const void *data, size_t n)
{
	struct keep *k = ctx;
	if (k->data)
		data_sums_update(&k->f->sums, data, n);
	if (k->f->small)
		memcpy(k->f->small + k->off, data, n);
	k->off += n;
	return 0;
}

/* Reads one file back from its source (the packs, or f->path) and holds it against the
 * backup's SHA-256 (readback.h), keeping small files in f->small for the Cassandra checks.
 * 0 with *got the bytes read and *differs whether they are not the backup's; else -errno with
 * why saying what failed. */
static int read_vf(struct reader *rd, struct vf *f, bool *differs, uint64_t *got,
		   struct strbuf *why)
{
	uint64_t total = f->size;
	int fd = f->path ? open_source(f, &total, why) : -1;
	if (fd < 0 && f->path)
		return fd;
	int r = is_data(f->name) ? data_sums_init(&f->sums, f->want_sha1) : 0;
	if (r == 0 && total < KEEP_BELOW && !(f->small = malloc(total + 1)))
		r = -ENOMEM;
	if (r < 0)
		sb_puts(why, strerror(-r));
	struct keep k = {.f = f, .data = is_data(f->name)};
	struct readback_result res = {0};
	if (r == 0 && fd >= 0)
		r = readback_fd(rd->rb, fd, total, f->want, keep_bytes, &k, &res);
	else if (r == 0)
		r = readback_pack(rd->rb, &f->loc, total, f->want, keep_bytes, &k, &res);
	if (fd >= 0)
		close(fd);
	*differs = r < 0 && res.step == READBACK_DIFFERS;
	if (*differs)
		r = 0; /* read whole: the caller tells how they differ */
	else if (r < 0 && res.step == READBACK_SOURCE && fd < 0 && !f->loc.pack_path[0])
		no_pack_holds_words(rd->st, why); /* not "STORE/: pack file is missing" */
	else if (r < 0 && res.step == READBACK_SOURCE && fd < 0)
		sb_printf(why, "%s/%s: %s", rd->store, f->loc.pack_path, pack_cache_strerror(r));
	else if (r < 0 && res.step == READBACK_SOURCE)
		sb_puts(why, res.why);
	else if (r < 0 && !why->len)
		sb_puts(why, strerror(-r));
	if (r < 0)
		return r;
	if (f->small) {
		f->small[total] = '\0';
		f->small_len = (size_t)total;
	}
	*got = total;
	if (is_data(f->name))
		data_sums_final(&f->sums);
	return 0;
}

struct toc_ctx {
	struct vf *v;
	size_t n;
	const struct vf *toc;
	size_t prefix;
	struct table_result *res;
};

static int toc_check(void *ctx, const char *component)
{
	struct toc_ctx *t = ctx;
	char name[512], where[512];
	snprintf(name, sizeof(name), "%.*s%s", (int)t->prefix, t->toc->name, component);
	if (!find(t->v, t->n, t->toc->dir, name))
		add_error(t->res, "%s lists %s, which is missing", rel(t->toc, where, sizeof(where)), name);
	return 0;
}

struct man_ctx {
	struct vf *v;
	size_t n;
	struct table_result *res;
	size_t count;
};

static int manifest_check(void *ctx, const char *file)
{
	struct man_ctx *m = ctx;
	char dir[256] = "";
	const char *name = file, *slash = strrchr(file, '/');
	if (slash) {
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - file), file);
		name = slash + 1;
	}
	m->count++;
	if (!find(m->v, m->n, dir, name))
		add_error(m->res, "manifest.json lists %s, which is missing", file);
	return 0;
}

/* Cassandra's own checks over the files of one table, once they have been read. */
static void cassandra_checks(struct vf *v, size_t n, struct table_result *res)
{
	char where[512];
	for (size_t i = 0; i < n; i++) {
		struct vf *f = &v[i];
		if (!f->read_ok)
			continue;
		size_t p = sstable_prefix_len(f->name);
		if (digest_kind_of(f->name) != DIGEST_NONE && f->small) {
			struct digest d;
			struct strbuf err = {0};
			if (digest_parse(f->name, f->small, f->small_len, &d, &err) < 0) {
				add_error(res, "%s", err.buf);
				sb_free(&err);
				continue;
			}
			char dname[512];
			snprintf(dname, sizeof(dname), "%.*sData.db", (int)p, f->name);
			struct vf *data = find(v, n, f->dir, dname);
			if (!data) {
				add_error(res, "%s has no %s to check", rel(f, where, sizeof(where)), dname);
				continue;
			}
			if (!data->read_ok)
				continue;
			if (d.kind == DIGEST_CRC32 && d.value != data->sums.crc32)
				add_error(res, "%s: CRC32 is %u, %s says %u", rel(data, where, sizeof(where)),
					  data->sums.crc32, f->name, d.value);
			else if (d.kind == DIGEST_ADLER32 && d.value != data->sums.adler32)
				add_error(res, "%s: Adler-32 is %u, %s says %u", rel(data, where, sizeof(where)),
					  data->sums.adler32, f->name, d.value);
			else if (d.kind == DIGEST_SHA1 && memcmp(d.sha1, data->sums.sha1, 20) != 0)
				add_error(res, "%s: SHA-1 differs from %s", rel(data, where, sizeof(where)), f->name);
		} else if (p && !strcmp(f->name + p, "TOC.txt") && f->small) {
			struct toc_ctx t = {.v = v, .n = n, .toc = f, .prefix = p, .res = res};
			toc_each(f->small, f->small_len, toc_check, &t);
		} else if (!*f->dir && !strcmp(f->name, "manifest.json") && f->small) {
			struct man_ctx m = {.v = v, .n = n, .res = res};
			if (manifest_files_each(f->small, f->small_len, manifest_check, &m) < 0)
				add_error(res, "manifest.json: no \"files\" list in it");
		}
	}
}

/* Reads every file of one table and checks it against the backup, then Cassandra's checks. */
static void read_and_check(struct reader *rd, struct vf *v, size_t n, struct table_result *res,
			   struct progress *prog)
{
	char where[512];
	for (size_t i = 0; i < n; i++) { /* Digest.sha1 of the 2.0 kind needs Data.db's SHA-1 */
		if (digest_kind_of(v[i].name) == DIGEST_SHA1) {
			char dname[512];
			snprintf(dname, sizeof(dname), "%.*sData.db", (int)sstable_prefix_len(v[i].name), v[i].name);
			struct vf *d = find(v, n, v[i].dir, dname);
			if (d)
				d->want_sha1 = true;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct vf *f = &v[i];
		bool differs = false;
		uint64_t got = 0;
		struct strbuf why = {0};
		int r = read_vf(rd, f, &differs, &got, &why);
		res->files++;
		res->bytes += f->size;
		progress_add(prog, f->size);
		progress_file_done(prog);
		if (r < 0) {
			add_error(res, "%s: cannot read: %s", rel(f, where, sizeof(where)),
				  why.buf ? why.buf : strerror(-r));
			sb_free(&why);
			continue;
		}
		f->read_ok = true;
		if (f->may_differ)
			continue; /* present is all that is asked of it (rewritten in place by Cassandra) */
		if (got != f->size)
			add_error(res, "%s: size is %llu, the backup recorded %llu", rel(f, where, sizeof(where)),
				  (unsigned long long)got, (unsigned long long)f->size);
		else if (differs)
			add_error(res, "%s: SHA-256 differs from the one recorded at backup time",
				  rel(f, where, sizeof(where)));
	}
	if (*res->keyspace) /* sstables: not what a backup's own files are */
		cassandra_checks(v, n, res);
}

/* ---- --dir: find each backed-up file among the restored ones -------------------------------- */

/* Does path hold exactly f's bytes (a regular file, not followed through a symlink)? */
static bool has_bytes(const char *path, const struct vf *f)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK); /* a FIFO: no wait */
	if (fd < 0)
		return false;
	struct stat st;
	unsigned char sha[32];
	bool same = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == f->size &&
		    sha256_fd(fd, f->size, sha, NULL, NULL, NULL) == 0 && !memcmp(sha, f->want, 32);
	close(fd);
	return same;
}

/* An sstable component not found under its own name: restored under a new generation, all its
 * components were renamed together; find the generation whose component has the same bytes and
 * present it under that name, so the TOC and digest checks pair up. */
static void map_new_generation(struct vf *f, const char *dir, struct table_result *res)
{
	size_t pl = sstable_prefix_len(f->name);
	struct strbuf d = {0};
	sb_printf(&d, "%s%s%s", dir, *f->dir ? "/" : "", f->dir);
	DIR *dd = opendir(d.buf);
	struct dirent *e;
	while (dd && !f->path && (e = readdir(dd))) {
		size_t el = sstable_prefix_len(e->d_name);
		if (!el || strcmp(e->d_name + el, f->name + pl) != 0)
			continue;
		struct strbuf p = {0};
		sb_printf(&p, "%s/%s", d.buf, e->d_name);
		char *name = strdup(e->d_name);
		if (name && p.buf && has_bytes(p.buf, f)) {
			free(f->name);
			f->name = name;
			f->path = p.buf;
			res->renamed++;
		} else {
			free(name);
			sb_free(&p);
		}
	}
	if (dd)
		closedir(dd);
	sb_free(&d);
}

/* A component Cassandra rewrites in place (sstable_component_rewritten_in_place: a
 * Statistics.db that nodetool import or a repair rewrote, a Summary.db saved again once its
 * index summary was resampled) has other bytes than the backup's. It must be there, in the
 * generation the other components of its sstable were found under: v[i] is pointed at it.
 * orig holds the names v had before map_new_generation renamed the ones found under new
 * generations. */
static void map_rewritten_in_place(struct vf *v, size_t n, char **orig, const char *dir,
				   struct table_result *res)
{
	for (size_t i = 0; i < n; i++) {
		size_t p = sstable_prefix_len(orig[i]);
		if (v[i].path || !sstable_component_rewritten_in_place(orig[i]))
			continue;
		size_t k = 0; /* a component of the same sstable that was found */
		while (k < n && !(v[k].path && k != i && !strcmp(v[k].dir, v[i].dir) &&
				  sstable_prefix_len(orig[k]) == p && !strncmp(orig[k], orig[i], p)))
			k++;
		if (k == n)
			continue;
		struct strbuf name = {0}, path = {0};
		sb_printf(&name, "%.*s%s", (int)sstable_prefix_len(v[k].name), v[k].name, orig[i] + p);
		sb_printf(&path, "%s%s%s/%s", dir, *v[i].dir ? "/" : "", v[i].dir, name.buf ? name.buf : "");
		if (name.buf && path.buf && sstable_rewritten_component_there(AT_FDCWD, path.buf)) {
			free(v[i].name);
			v[i].name = name.buf, name.buf = NULL;
			v[i].path = path.buf, path.buf = NULL;
			v[i].may_differ = true;
			if (sstable_is_statistics(orig[i]))
				res->rewritten++;
			else
				res->resampled++;
		}
		sb_free(&name);
		sb_free(&path);
	}
}

/* Maps each backed-up file to the file in dir holding the same bytes: the same name, or an
 * sstable component restored under another generation; a component Cassandra rewrites in
 * place only needs to be there (map_rewritten_in_place). */
static void map_to_dir(struct vf *v, size_t n, const char *dir, struct table_result *res)
{
	char **orig = calloc(n ? n : 1, sizeof(*orig));
	bool all = orig != NULL;
	for (size_t i = 0; all && i < n; i++)
		all = (orig[i] = strdup(v[i].name)) != NULL;
	for (size_t i = 0; i < n; i++) {
		struct strbuf p = {0};
		sb_printf(&p, "%s%s%s/%s", dir, *v[i].dir ? "/" : "", v[i].dir, v[i].name);
		if (p.buf && has_bytes(p.buf, &v[i]))
			v[i].path = p.buf;
		else
			sb_free(&p);
	}
	for (size_t i = 0; i < n; i++)
		if (!v[i].path && sstable_prefix_len(v[i].name))
			map_new_generation(&v[i], dir, res);
	if (all) /* out of memory: each must hold its bytes, as before */
		map_rewritten_in_place(v, n, orig, dir, res);
	for (size_t i = 0; orig && i < n; i++)
		free(orig[i]);
	free(orig);
}

/* What nodetool import takes from its source directory: the sstables of the directory itself
 * (SSTableImporter lists one directory; Cassandra builds secondary indexes itself). */
static bool imported_by_nodetool(const struct vf *f)
{
	return !*f->dir && sstable_prefix_len(f->name) > 0;
}

static void not_imported(const struct vf *f, void *ctx)
{
	(void)f;
	((struct table_result *)ctx)->not_imported++;
}

/* Moves the files for which keep() is false behind the others (in order, calling drop() for
 * each) and returns how many are kept: v[0 .. kept) are checked, all n stay owned by l. */
static size_t vlist_partition(struct vlist *l, size_t n, bool (*keep)(const struct vf *f),
			      void (*drop)(const struct vf *f, void *ctx), void *ctx)
{
	struct vf *tmp = malloc((n ? n : 1) * sizeof(*tmp));
	size_t k = 0, d = n;
	for (size_t j = 0; j < n; j++) {
		bool kept = keep(&l->v[j]);
		if (!kept && drop)
			drop(&l->v[j], ctx);
		if (tmp)
			tmp[kept ? k : --d] = l->v[j];
		k += kept;
	}
	if (!tmp)
		return n; /* out of memory: check them all rather than lose any */
	for (size_t j = k; j < n; j++) /* the dropped ones were filled from the end */
		l->v[j] = tmp[n - 1 - (j - k)];
	memcpy(l->v, tmp, k * sizeof(*tmp));
	free(tmp);
	return k;
}

/* Snapshot-only files are not copied into live table directories. */
static bool not_snapshot_only(const struct vf *f)
{
	return *f->dir || (strcmp(f->name, "manifest.json") && strcmp(f->name, "schema.cql"));
}

static bool has_path(const struct vf *f)
{
	return f->path != NULL;
}

struct dir_ctx {
	struct table_result *res;
	const char *dir;
};

static void missing_from_dir(const struct vf *f, void *ctx)
{
	struct dir_ctx *d = ctx;
	char where[512];
	add_error(d->res, "%s: missing from %s (no file with its bytes)", rel(f, where, sizeof(where)), d->dir);
	d->res->files++;
	d->res->bytes += f->size;
}

/* ---- report ------------------------------------------------------------------------------ */

static void report_json(struct json *j, const struct table_result *t, const char *backup)
{
	json_object_begin(j);
	json_kv_str(j, "backup", backup);
	json_kv_str(j, "keyspace", t->keyspace);
	json_kv_str(j, "table", t->table);
	json_kv_str(j, "status", t->nerrors ? "failed" : "ok");
	json_kv_u64(j, "files", t->files);
	json_kv_u64(j, "bytes", t->bytes);
	json_kv_u64(j, "statistics_rewritten", t->rewritten);
	json_kv_u64(j, "summaries_resampled", t->resampled);
	json_kv_u64(j, "files_not_imported", t->not_imported);
	json_key(j, "errors");
	json_array_begin(j);
	for (size_t i = 0; i < t->nerrors; i++)
		json_str(j, error_text(t, i));
	json_array_end(j);
	json_object_end(j);
	json_flush(j, stdout);
}

/* One line per table, and one indented line per problem; every name escaped, so that no name
 * can forge or split a line. */
static void report_text(const struct table_result *t, const char *backup)
{
	char size[32];
	format_bytes(t->bytes, size, sizeof(size));
	struct strbuf o = {0};
	sb_puts(&o, t->nerrors ? "FAILED  " : "ok      ");
	sb_escape(&o, backup);
	sb_puts(&o, " ");
	if (*t->keyspace) {
		sb_escape(&o, t->keyspace);
		sb_puts(&o, ".");
		sb_escape(&o, t->table);
	} else {
		sb_puts(&o, "schema.cql and cassandra-conf/");
	}
	if (!t->nerrors)
		sb_printf(&o, ": %zu file%s, %s%s", t->files, t->files == 1 ? "" : "s", size,
			  t->renamed ? " (some sstables under new generations)" : "");
	if (!t->nerrors && t->imported && (t->rewritten || t->not_imported))
		sb_printf(&o, " (nodetool import: %zu Statistics.db rewritten, %zu files not imported)",
			  t->rewritten, t->not_imported);
	else if (!t->nerrors && t->rewritten)
		sb_printf(&o, " (%zu Statistics.db rewritten by Cassandra)", t->rewritten);
	if (!t->nerrors && t->resampled)
		sb_printf(&o, " (%zu Summary.db saved again by Cassandra: index summary resampled)",
			  t->resampled);
	if (!t->nerrors)
		sb_puts(&o, "\n");
	else
		sb_printf(&o, ": %zu files checked, %zu problem(s):\n", t->files, t->nerrors);
	for (size_t i = 0; i < t->nerrors; i++) {
		sb_puts(&o, "        ");
		sb_escape(&o, error_text(t, i));
		sb_puts(&o, "\n");
	}
	fputs(o.buf ? o.buf : "out of memory\n", stdout);
	sb_free(&o);
}

/* ---- plan and execute --------------------------------------------------------------------- */

struct verify {
	const char *store, *dir, *against, *node;
	bool all, json, imported;
	struct selection sel;
	struct strv names; /* the backups to check (refs) */
	struct strv shown; /* how each is called in what is printed (cluster_shown) */
	struct store *st;
	catalog *cat;      /* the store's */
	struct reader rd;
	struct json j;
	struct strbuf out;
	bool failed;
	size_t tables_ok, tables_failed; /* for the summary */
	uint64_t files, bytes;
};

static int names_cb(void *ctx, const struct cb_backup_summary *b)
{
	return strv_push(ctx, b->ref);
}

/* --dir DIR --against NAME/KS/TABLE: the backup to check, and the table as a selection. */
static int plan_dir(struct cli_command *cmd, struct verify *v)
{
	const char *a = v->against, *s1 = strchr(a, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
	struct strbuf kt = {0}, err = {0};
	_cleanup_free_ char *name = s1 ? strndup(a, (size_t)(s1 - a)) : NULL;
	int r = !s2 || strchr(s2 + 1, '/') || !name || !name_is_component(name) ? -EINVAL : 0;
	r = r ?: sb_printf(&kt, "%.*s.%s", (int)(s2 - s1 - 1), s1 + 1, s2 + 1);
	r = r ?: selection_add_table(&v->sel, kt.buf, &err);
	r = r ?: strv_push(&v->names, name);
	sb_free(&kt);
	sb_free(&err);
	if (r < 0) {
		_cleanup_free_ char *shown = cli_escape(a);
		return cli_usage_error(cmd, "--against %s: expected NAME/KEYSPACE/TABLE", shown ? shown : "");
	}
	/* errno is read only right after the call that set it (no stale one from before) */
	struct stat st;
	_cleanup_free_ char *shown = cli_escape(v->dir);
	if (stat(v->dir, &st) < 0) {
		errorf("--dir %s: %s", shown ? shown : "", strerror(errno));
		return CB_EXIT_USAGE;
	}
	if (!S_ISDIR(st.st_mode)) {
		errorf("--dir %s: not a directory", shown ? shown : "");
		return CB_EXIT_USAGE;
	}
	return CLI_RUN;
}

/* The backups to check: every one (--all), the named ones (each must exist), or --against's. */
static int plan(struct cli_command *cmd, struct verify *v, char **names, int nnames)
{
	if (v->dir && (!v->against || v->all || nnames || !selection_is_empty(&v->sel)))
		return cli_usage_error(cmd, "--dir needs --against NAME/KS/TABLE and no backup names, "
					    "--all, --keyspace or --table");
	if (!v->dir && v->against)
		return cli_usage_error(cmd, "--against goes with --dir");
	if (!v->dir && v->imported)
		return cli_usage_error(cmd, "--imported goes with --dir");
	if (!v->dir && v->all == (nnames > 0))
		return cli_usage_error(cmd, "give backup names or --all");
	if (v->all && v->node)
		return cli_usage_error(cmd, CLUSTER_ALL_WITH_NODE);
	int rc = v->dir ? plan_dir(cmd, v) : CLI_RUN;
	if (rc != CLI_RUN)
		return rc;
	int r = cli_store_open(v->store, STORE_READONLY, &v->st);
	if (r != 0)
		return r;
	v->cat = store_catalog(v->st);
	char why[512];
	if (v->all && (r = catalog_list_backups(v->cat, names_cb, &v->names)) < 0) {
		errorf("cannot read catalog of %s: %s", v->store, catalog_why(v->cat, r, why, sizeof(why)));
		return CB_EXIT_FAILED;
	}
	/* each NAME: all its node backups (one with --node); --against's: the one */
	struct strv given = v->names;
	v->names = (struct strv){0};
	for (size_t i = 0; rc == CLI_RUN && i < given.n; i++)
		rc = cluster_pick(v->st, v->store, given.v[i], v->node, false, &v->names) ?: CLI_RUN;
	for (int i = 0; rc == CLI_RUN && i < nnames; i++)
		rc = cluster_pick(v->st, v->store, names[i], v->node, true, &v->names) ?: CLI_RUN;
	strv_free(&given);
	for (size_t i = 0; rc == CLI_RUN && i < v->names.n; i++)
		if (cluster_shown(v->cat, v->names.v[i], &v->shown) < 0)
			return errorf("out of memory"), CB_EXIT_FAILED;
	if (rc != CLI_RUN)
		return rc;
	if ((r = readback_new(v->st, NULL, &v->rd.rb)) < 0) {
		errorf("cannot start: %s", strerror(-r));
		return CB_EXIT_FAILED;
	}
	v->rd.store = v->store;
	v->rd.st = v->st;
	return CLI_RUN;
}

/* Checks one table of a backup, its files l from the catalog (t NULL: the backup's own files,
 * catalog.h), and reports it. Frees l. */
static void execute_table(struct verify *v, const char *name, const char *shown,
			  const struct cb_table_row *t, struct vlist *lp)
{
	struct vlist l = *lp;
	struct table_result res = {.keyspace = t ? t->keyspace : "", .table = t ? t->table : ""};
	*lp = (struct vlist){0};
	/* the SHA-256 each file is checked against must be the manifest's, not only the cache's */
	struct strbuf why = {0};
	int m = files_match_manifest(v->st, name, res.keyspace, res.table, &l, &why);
	if (m == 0 && !t && l.n == 0) { /* the node's own files: none kept, none missing */
		sb_free(&why);
		vlist_free(&l);
		return;
	}
	if (m < 0)
		add_error(&res, "%s", why.buf ? why.buf : "the manifest cannot be read");
	sb_free(&why);
	size_t n = l.n; /* the files to read: v[0 .. n) */
	if (v->dir) {
		struct dir_ctx d = {.res = &res, .dir = v->dir};
		n = vlist_partition(&l, n, not_snapshot_only, NULL, NULL);
		res.imported = v->imported;
		if (v->imported)
			n = vlist_partition(&l, n, imported_by_nodetool, not_imported, &res);
		map_to_dir(l.v, n, v->dir, &res);
		n = vlist_partition(&l, n, has_path, missing_from_dir, &d);
	}
	uint64_t bytes = 0;
	for (size_t j = 0; j < n; j++)
		bytes += l.v[j].size;
	struct progress prog;
	progress_init(&prog, "verifying", bytes, n);
	read_and_check(&v->rd, l.v, n, &res, &prog);
	progress_end(&prog);
	if (v->json)
		report_json(&v->j, &res, shown);
	else
		report_text(&res, shown);
	v->failed |= res.nerrors > 0;
	v->tables_ok += t && res.nerrors == 0;
	v->tables_failed += t && res.nerrors > 0;
	v->files += res.files;
	v->bytes += res.bytes;
	strv_free(&res.errors);
	vlist_free(&l);
}

/* The last line: "66 tables ok, 0 failed in 1 backup (1234 files, 5.0 GiB)"; in JSON, the
 * "summary" object after "tables". */
static void report_summary(struct verify *v)
{
	if (v->json) {
		json_array_end(&v->j); /* "tables" */
		json_key(&v->j, "summary");
		json_object_begin(&v->j);
		json_kv_u64(&v->j, "backups", v->names.n);
		json_kv_u64(&v->j, "tables", v->tables_ok + v->tables_failed);
		json_kv_u64(&v->j, "ok", v->tables_ok);
		json_kv_u64(&v->j, "failed", v->tables_failed);
		json_kv_u64(&v->j, "files", v->files);
		json_kv_u64(&v->j, "bytes", v->bytes);
		json_object_end(&v->j);
		return;
	}
	char size[32];
	format_bytes(v->bytes, size, sizeof(size));
	printf("%zu %s ok, %zu failed in %zu backup%s (%llu files, %s)\n", v->tables_ok,
	       v->tables_ok == 1 ? "table" : "tables", v->tables_failed, v->names.n,
	       v->names.n == 1 ? "" : "s", (unsigned long long)v->files, size);
}

/* --all on a store without backups: nothing to check, and that is no failure. */
static int report_no_backups(struct verify *v)
{
	if (v->json) {
		report_summary(v);
		return CB_EXIT_OK;
	}
	struct strbuf o = {0};
	sb_puts(&o, "no backups in ");
	sb_escape(&o, v->store);
	sb_puts(&o, "\n");
	fputs(o.buf ? o.buf : "out of memory\n", stdout);
	sb_free(&o);
	return CB_EXIT_OK;
}

/* A whole backup is verified: its own files too. */
static bool whole_backup(const struct verify *v)
{
	return !v->dir && selection_is_empty(&v->sel);
}

/* Backup name's tables, and into (*lists)[k] the files of each selected table k, and into
 * (*lists)[ts->n] the backup's own when whole_backup: read from one state of the catalog (a
 * reindex beside it may renumber rows), and then left, so that reading a pack that a prune
 * repacked meanwhile finds it where it is now. 0, or < 0 (said). */
static int load_backup_files(struct verify *v, const char *name, struct tables *ts,
			     struct vlist **lists)
{
	char why[512];
	int r = catalog_read_begin(v->cat);
	if (r < 0) {
		errorf("cannot read catalog of %s: %s", v->store, catalog_why(v->cat, r, why, sizeof(why)));
		return r;
	}
	if ((r = load_tables(v->st, v->store, name, ts)) == 0 &&
	    !(*lists = calloc(ts->n + 1, sizeof(**lists)))) {
		errorf("out of memory");
		r = -ENOMEM;
	}
	for (size_t k = 0; r == 0 && k < ts->n; k++)
		if (selection_matches(&v->sel, ts->v[k].keyspace, ts->v[k].table))
			r = load_files(v->cat, v->store, ts->v[k].row, &(*lists)[k]);
	if (r == 0 && whole_backup(v))
		r = load_files(v->cat, v->store, -ts->backup_id, &(*lists)[ts->n]);
	catalog_rollback(v->cat);
	if (r < 0 && *lists) {
		for (size_t k = 0; k <= ts->n; k++)
			vlist_free(&(*lists)[k]);
		free(*lists);
		*lists = NULL;
	}
	if (r < 0)
		tables_free(ts);
	return r;
}

/* verify --all: the backups whose manifests the store could not read (damaged, unreadable)
 * are not in the catalog, and would pass unnoticed; they fail the run, in one line. */
static void report_skipped_manifests(struct verify *v)
{
	unsigned n;
	const char *why = store_skipped_manifests(v->st, &n);
	if (!v->all || n == 0)
		return;
	_cleanup_free_ char *shown = cli_escape(v->store), *what = cli_escape(why);
	errorf("cannot verify %u backup(s) of %s: their manifests cannot be read: %s (cassbackup "
	       "check tells more)", n, shown ? shown : "", what ? what : "");
	v->failed = true;
}

static int execute(struct verify *v)
{
	report_skipped_manifests(v);
	if (v->names.n == 0)
		return v->failed ? CB_EXIT_FAILED : report_no_backups(v);
	for (size_t i = 0; i < v->names.n; i++) {
		struct tables ts = {0};
		struct vlist *lists = NULL;
		if (load_backup_files(v, v->names.v[i], &ts, &lists) < 0)
			return CB_EXIT_FAILED;
		for (size_t k = 0; k < ts.n; k++)
			if (selection_matches(&v->sel, ts.v[k].keyspace, ts.v[k].table))
				execute_table(v, v->names.v[i], v->shown.v[i], &ts.v[k], &lists[k]);
		if (whole_backup(v))
			execute_table(v, v->names.v[i], v->shown.v[i], NULL, &lists[ts.n]);
		tables_free(&ts);
		free(lists);
	}
	report_summary(v);
	const struct selection_entry *miss = selection_unmatched(&v->sel);
	if (miss) {
		struct strbuf m = {0};
		sb_selection_entry(&m, miss);
		_cleanup_free_ char *shown = cli_escape(v->names.n == 1 ? v->shown.v[0] : "");
		if (v->names.n == 1)
			errorf("%s: not in backup %s", m.buf ? m.buf : "", shown ? shown : "");
		else
			errorf("%s: not in any backup checked", m.buf ? m.buf : "");
		sb_free(&m);
		return CB_EXIT_FAILED;
	}
	return v->failed ? CB_EXIT_FAILED : CB_EXIT_OK;
}

static const char *const verify_usage[] = {
	"--store DIR (NAME... | --all) [--keyspace KS]... [--table KS.TABLE]... [--json]",
	"--store DIR --dir TABLE_DIR --against NAME/KS/TABLE [--imported] [--json]",
	NULL,
};

int cmd_verify(int argc, char **argv)
{
	struct verify v = {0};
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &v.store, .arg = "DIR",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "all", .type = OPT_FLAG, .value = &v.all, .help = "check every backup in the store"},
		{.name = "node", .type = OPT_STRING, .value = &v.node, .arg = "NODE",
		 .help = "only this node's backup of each NAME (host id, a prefix of it, node name or address)"},
		{.name = "keyspace", .type = OPT_KEYSPACE, .value = &v.sel, .arg = "KS",
		 .help = "check only this keyspace (repeatable)"},
		{.name = "table", .type = OPT_TABLE, .value = &v.sel, .arg = "KS.TABLE",
		 .help = "check only this table (repeatable)"},
		{.name = "dir", .type = OPT_STRING, .value = &v.dir, .arg = "TABLE_DIR",
		 .help = "check a restored table directory instead"},
		{.name = "against", .type = OPT_STRING, .value = &v.against, .arg = "NAME/KS/TABLE",
		 .help = "the backed-up table --dir must hold"},
		{.name = "imported", .type = OPT_FLAG, .value = &v.imported,
		 .help = "--dir took the backup through nodetool import (restore --import)"},
		{.name = "json", .type = OPT_FLAG, .value = &v.json, .help = "print JSON for scripts"},
		{0},
	};
	struct cli_command cmd = {
		.name = "verify",
		.usage = verify_usage,
		.operands = "NAME...",
		.max_operands = -1,
		.description = "Reads every file of the backups back out of the packs and checks SHA-256 and size,\n"
			       "each Data.db against its Digest.crc32/.adler32/.sha1, TOC.txt and manifest.json.\n"
			       "With --dir, checks a restored table directory against the backup; with\n"
			       "--imported, one that took it through nodetool import (restore --import):\n"
			       "index sstables and other files are not looked for (Cassandra builds its\n"
			       "indexes). Statistics.db and Summary.db may differ: Cassandra rewrites them.\n"
			       "Exit 1 when any table fails.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc == CLI_RUN)
		rc = plan(&cmd, &v, argv + first, argc - first);
	if (rc == CLI_RUN) {
		json_init(&v.j, &v.out);
		if (v.json) { /* {"tables": [one per table, as each is done], "summary": {...}} */
			json_object_begin(&v.j);
			json_key(&v.j, "tables");
			json_array_begin(&v.j);
		}
		rc = execute(&v);
		if (v.json && v.j.depth == 2) /* no summary: a failure cut it short */
			json_array_end(&v.j);
		if (v.json && v.j.depth == 1)
			json_object_end(&v.j);
		if (v.json)
			json_flush(&v.j, stdout);
	}
	sb_free(&v.out);
	readback_free(v.rd.rb);
	store_close(v.st);
	strv_free(&v.names);
	strv_free(&v.shown);
	selection_free(&v.sel);
	return rc;
}
