/* cassbackup verify: read backups back and check them the way Cassandra would.
 *
 * Every byte is read out of the packs (not taken on the catalog's word) and checked against the
 * SHA-256 and size recorded at backup time; then Cassandra's own checks: each Data.db against
 * its Digest.crc32 / Digest.adler32 / Digest.sha1, every component TOC.txt lists is present,
 * every Data.db that manifest.json lists is present. With --dir, a restored table directory is
 * checked against the backup instead (an sstable restored under a new generation counts).
 */
#include "cli.h"
#include "hash.h"
#include "packread.h"
#include "sstable.h"
#include "backup_files.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (1u << 20)
#define KEEP_BELOW (1u << 20) /* small files kept in memory for the TOC/digest/manifest checks */

struct table_result {
	char *keyspace, *table;
	size_t files;
	uint64_t bytes;
	size_t renamed;
	struct strbuf errors; /* one per line */
	size_t nerrors;
};

static void add_error(struct table_result *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_error(struct table_result *t, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	sb_printf(&t->errors, "%s\n", line);
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

/* Reads one file from its source, hashing as it goes. */
static int read_vf(pack_cache *pc, const char *store, struct vf *f, unsigned char sha[32],
		   uint64_t *got, char **why)
{
	static char reason[512];
	*why = reason;
	sha256_ctx *h;
	int r = sha256_new(&h);
	if (r < 0)
		return r;
	if (is_data(f->name))
		data_sums_init(&f->sums, f->want_sha1);
	char *buf = malloc(CHUNK);
	int fd = -1;
	if (!buf) {
		sha256_free(h);
		return -ENOMEM;
	}
	if (f->path && (fd = open(f->path, O_RDONLY | O_CLOEXEC)) < 0) {
		r = -errno;
		snprintf(reason, sizeof(reason), "%s", strerror(errno));
		goto out;
	}
	uint64_t off = 0;
	uint64_t total = f->size;
	if (f->path) {
		struct stat st;
		fstat(fd, &st);
		total = (uint64_t)st.st_size;
	}
	if (total < KEEP_BELOW)
		f->small = malloc(total + 1);
	while (off < total) {
		size_t n = total - off < CHUNK ? (size_t)(total - off) : CHUNK;
		if (f->path) {
			ssize_t k = pread_full(fd, buf, n, (off_t)off);
			r = k < 0 ? (int)k : 0;
			if (k >= 0 && (size_t)k != n)
				r = -ESTALE;
		} else {
			r = pack_cache_read(pc, f->loc.pack_id, f->loc.pack_path, f->loc.offset + off, buf, n);
		}
		if (r < 0) {
			if (f->path)
				snprintf(reason, sizeof(reason), "%s", strerror(-r));
			else
				snprintf(reason, sizeof(reason), "%s/%s: %s", store, f->loc.pack_path,
					 r == -ENOENT ? "pack file is missing"
					 : r == -EIO ? "pack data is corrupt (checksum mismatch)"
					 : r == -EINVAL ? "pack has no valid seek table" : strerror(-r));
			goto out;
		}
		sha256_update(h, buf, n);
		if (is_data(f->name))
			data_sums_update(&f->sums, buf, n);
		if (f->small)
			memcpy(f->small + off, buf, n);
		off += n;
	}
	if (f->small) {
		f->small[total] = '\0';
		f->small_len = (size_t)total;
	}
	r = sha256_final(h, sha);
	*got = total;
	if (is_data(f->name))
		data_sums_final(&f->sums);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	sha256_free(h);
	return r;
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

static void read_and_check(pack_cache *pc, const char *store, struct vf *v, size_t n,
			   struct table_result *res, struct progress *prog)
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
		unsigned char sha[32];
		uint64_t got = 0;
		char *why;
		int r = read_vf(pc, store, f, sha, &got, &why);
		res->files++;
		res->bytes += f->size;
		progress_add(prog, f->size);
		progress_file_done(prog);
		if (r < 0) {
			add_error(res, "%s: cannot read: %s", rel(f, where, sizeof(where)), why);
			continue;
		}
		f->read_ok = true;
		if (got != f->size)
			add_error(res, "%s: size is %llu, the backup recorded %llu", rel(f, where, sizeof(where)),
				  (unsigned long long)got, (unsigned long long)f->size);
		else if (memcmp(sha, f->want, 32) != 0)
			add_error(res, "%s: SHA-256 differs from the one recorded at backup time",
				  rel(f, where, sizeof(where)));
	}
	cassandra_checks(v, n, res);
}

static int names_cb(void *ctx, const struct cb_backup_summary *b)
{
	struct strbuf *sb = ctx;
	return sb_append(sb, b->name, strlen(b->name) + 1);
}

/* Maps each backed-up file to the file in dir holding the same bytes: the same name, or an
 * sstable component restored under another generation. */
static void map_to_dir(struct vf *v, size_t n, const char *dir, struct table_result *res)
{
	for (size_t i = 0; i < n; i++) {
		struct vf *f = &v[i];
		struct strbuf p = {0};
		sb_printf(&p, "%s%s%s/%s", dir, *f->dir ? "/" : "", f->dir, f->name);
		struct stat st;
		if (stat(p.buf, &st) == 0 && (uint64_t)st.st_size == f->size) {
			sha256_ctx *h;
			unsigned char sha[32];
			int fd = open(p.buf, O_RDONLY | O_CLOEXEC);
			if (fd >= 0 && sha256_new(&h) == 0) {
				int r = sha256_fd(fd, f->size, sha, NULL, NULL, NULL);
				sha256_free(h);
				close(fd);
				if (r == 0 && !memcmp(sha, f->want, 32)) {
					f->path = p.buf;
					continue;
				}
			} else if (fd >= 0) {
				close(fd);
			}
		}
		sb_free(&p);
	}
	/* Not found under its own name: an sstable restored under a new generation has all its
	 * components renamed together; find the generation whose Data.db has the same bytes. */
	for (size_t i = 0; i < n; i++) {
		struct vf *f = &v[i];
		size_t pl = sstable_prefix_len(f->name);
		if (f->path || !pl)
			continue;
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
			struct stat st;
			unsigned char sha[32];
			int fd = open(p.buf, O_RDONLY | O_CLOEXEC);
			if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size == f->size &&
			    sha256_fd(fd, f->size, sha, NULL, NULL, NULL) == 0 && !memcmp(sha, f->want, 32)) {
				/* present it under the restored name, so TOC and digest checks pair up */
				free(f->name);
				f->name = strdup(e->d_name);
				f->path = p.buf;
				res->renamed++;
			} else {
				sb_free(&p);
			}
			if (fd >= 0)
				close(fd);
		}
		if (dd)
			closedir(dd);
		sb_free(&d);
	}
}

static void print_result(const struct table_result *t, const char *backup, bool json, bool first)
{
	if (json) {
		struct strbuf j = {0};
		sb_puts(&j, first ? "\n  {\"backup\": " : ",\n  {\"backup\": ");
		sb_json_str(&j, backup);
		sb_puts(&j, ", \"keyspace\": ");
		sb_json_str(&j, t->keyspace);
		sb_puts(&j, ", \"table\": ");
		sb_json_str(&j, t->table);
		sb_printf(&j, ", \"status\": \"%s\", \"files\": %zu, \"bytes\": %llu, \"errors\": [",
			  t->nerrors ? "failed" : "ok", t->files, (unsigned long long)t->bytes);
		const char *p = t->errors.buf;
		for (size_t i = 0; p && i < t->nerrors; i++) {
			const char *nl = strchr(p, '\n');
			char *line = strndup(p, (size_t)(nl - p));
			if (i)
				sb_puts(&j, ", ");
			sb_json_str(&j, line);
			free(line);
			p = nl + 1;
		}
		sb_puts(&j, "]}");
		fputs(j.buf, stdout);
		sb_free(&j);
		return;
	}
	char size[32];
	format_bytes(t->bytes, size, sizeof(size));
	if (!t->nerrors) {
		printf("ok      %s %s.%s: %zu files, %s%s\n", backup, t->keyspace, t->table, t->files, size,
		       t->renamed ? " (some sstables under new generations)" : "");
		return;
	}
	printf("FAILED  %s %s.%s: %zu files checked, %zu problem(s):\n", backup, t->keyspace,
	       t->table, t->files, t->nerrors);
	const char *p = t->errors.buf;
	for (size_t i = 0; i < t->nerrors; i++) {
		const char *nl = strchr(p, '\n');
		printf("        %.*s\n", (int)(nl - p), p);
		p = nl + 1;
	}
}

static void verify_usage(FILE *f)
{
	fprintf(f, "usage: cassbackup verify --store DIR (NAME... | --all) [--json]\n"
		   "       cassbackup verify --store DIR --dir TABLE_DIR --against NAME/KS/TABLE [--json]\n"
		   "Reads every file of the backups back out of the packs and checks SHA-256 and size,\n"
		   "each Data.db against its Digest.crc32/.adler32/.sha1, TOC.txt and manifest.json.\n"
		   "With --dir, checks a restored table directory against the backup.\n");
}

int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{"store", required_argument, NULL, 's'},
		{"all", no_argument, NULL, 'a'},
		{"json", no_argument, NULL, 'J'},
		{"dir", required_argument, NULL, 'd'},
		{"against", required_argument, NULL, 'A'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *store = NULL, *dir = NULL, *against = NULL;
	bool all = false, json = false;
	int c;
	while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': store = optarg; break;
		case 'a': all = true; break;
		case 'J': json = true; break;
		case 'd': dir = optarg; break;
		case 'A': against = optarg; break;
		case 'h': verify_usage(stdout); return 0;
		default: return 2;
		}
	}
	if (!store)
		store = config_get("store");
	if (!store || (dir && (!against || all || optind < argc)) || (!dir && against) ||
	    (!dir && (all == (optind < argc)))) {
		verify_usage(stderr);
		return 2;
	}
	catalog *cat;
	if (open_store(store, CATALOG_READONLY, &cat) < 0)
		return 1;
	pack_cache *pc = NULL;
	int rc = 1;
	struct strbuf names = {0}; /* NUL-separated backup names */
	char *aks = NULL, *atable = NULL, *aname = NULL;
	if (pack_cache_new(&pc, store, 8u << 20) < 0) {
		errorf("out of memory");
		goto out;
	}
	if (dir) {
		aname = strdup(against);
		char *s1 = strchr(aname, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
		if (!s1 || !s2 || strchr(s2 + 1, '/')) {
			errorf("--against %s: expected NAME/KEYSPACE/TABLE", against);
			rc = 2;
			goto out;
		}
		*s1 = *s2 = '\0';
		aks = s1 + 1;
		atable = s2 + 1;
		struct stat st;
		if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
			errorf("--dir %s: %s", dir, errno ? strerror(errno) : "not a directory");
			goto out;
		}
		sb_append(&names, aname, strlen(aname) + 1);
	} else if (all) {
		if (catalog_list_backups(cat, names_cb, &names) < 0) {
			errorf("cannot read catalog of %s: %s", store, catalog_errmsg(cat));
			goto out;
		}
	} else {
		for (int i = optind; i < argc; i++)
			sb_append(&names, argv[i], strlen(argv[i]) + 1);
	}

	bool failed = false, first = true;
	if (json)
		fputs("[", stdout);
	for (size_t off = 0; off < names.len; off += strlen(names.buf + off) + 1) {
		const char *name = names.buf + off;
		struct tables ts = {0};
		if (load_tables(cat, store, name, &ts) < 0)
			goto out;
		bool matched = false;
		for (size_t i = 0; i < ts.n; i++) {
			if (dir && (strcmp(ts.v[i].keyspace, aks) || strcmp(ts.v[i].table, atable)))
				continue;
			matched = true;
			struct vlist l = {0};
			struct table_result res = {.keyspace = (char *)ts.v[i].keyspace,
						   .table = (char *)ts.v[i].table};
			if (load_files(cat, store, ts.v[i].row, &l) < 0) {
				tables_free(&ts);
				goto out;
			}
			if (dir) { /* snapshot-only files are not copied into live table dirs */
				size_t k = 0;
				for (size_t j = 0; j < l.n; j++) {
					if (!*l.v[j].dir && (!strcmp(l.v[j].name, "manifest.json") ||
							     !strcmp(l.v[j].name, "schema.cql"))) {
						free(l.v[j].dir);
						free(l.v[j].name);
						continue;
					}
					l.v[k++] = l.v[j];
				}
				l.n = k;
				map_to_dir(l.v, l.n, dir, &res);
			}
			uint64_t bytes = 0;
			for (size_t j = 0; j < l.n; j++)
				bytes += l.v[j].size;
			struct progress prog;
			progress_init(&prog, "verifying", bytes, l.n);
			if (dir) {
				char where[512];
				size_t k = 0;
				for (size_t j = 0; j < l.n; j++) {
					if (!l.v[j].path) {
						add_error(&res, "%s: missing from %s (no file with its bytes)",
							  rel(&l.v[j], where, sizeof(where)), dir);
						res.files++;
						res.bytes += l.v[j].size;
						free(l.v[j].dir);
						free(l.v[j].name);
						continue;
					}
					l.v[k++] = l.v[j];
				}
				l.n = k;
			}
			read_and_check(pc, store, l.v, l.n, &res, &prog);
			progress_end(&prog);
			print_result(&res, name, json, first);
			first = false;
			failed |= res.nerrors > 0;
			sb_free(&res.errors);
			vlist_free(&l);
		}
		tables_free(&ts);
		if (dir && !matched) {
			errorf("table %s.%s: not in backup %s", aks, atable, name);
			goto out;
		}
	}
	if (json)
		fputs(first ? "]\n" : "\n]\n", stdout);
	rc = failed ? 1 : 0;
out:
	free(aname);
	sb_free(&names);
	pack_cache_free(pc);
	catalog_close(cat);
	return rc;
}
