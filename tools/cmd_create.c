/* cassbackup create: back up one snapshot of a node into a store.
 *
 * Order of work, so that a crash or an error at any point leaves either no backup or a whole
 * one, and never touches an earlier backup:
 *   1. scan the snapshot (nothing is written yet);
 *   2. write one new pack to STORE/tmp/ (locked): files whose bytes the store lacks, then a
 *      manifest describing the whole backup;
 *   3. fsync, rename into packs/, fsync the directories;
 *   4. one SQLite transaction registers the pack, its blobs and the backup.
 * Deduplication: a file whose (SHA-256, size) is already stored is not written again. Hashing
 * first costs a second read, so it is done only where a duplicate is possible: small files,
 * and files whose exact size some stored (or just written) blob has.
 */
#include "cli.h"
#include "exec.h"
#include "hash.h"
#include "pack.h"
#include "scan.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREHASH_BELOW (1u << 20) /* always hash files smaller than this before writing */
#define IN_MEMORY_BELOW (8u << 20) /* read files this small once, into memory: the bytes hashed
				    * are then exactly the bytes written */

struct blob {
	unsigned char sha[32];
	uint64_t size;
	uint64_t offset; /* in this pack's tar stream */
	int64_t id;      /* catalog id once registered */
	char *member;    /* the member holding the bytes, for hard links to it */
};

struct plan {
	unsigned char sha[32];
	int64_t stored_id; /* > 0: bytes already in the store */
	long pending;      /* >= 0: index into blobs written to this pack */
};

/* Open-addressing map from (sha256, size) to an index in the pending blobs. */
struct blob_map {
	long *slots; /* -1: empty */
	size_t cap;
	size_t n;
};

static size_t blob_hash(const unsigned char *sha, uint64_t size)
{
	uint64_t h;
	memcpy(&h, sha, sizeof(h));
	return (size_t)(h ^ size * 0x9E3779B97F4A7C15ull);
}

static long map_find(const struct blob_map *m, const struct blob *blobs, const unsigned char *sha,
		     uint64_t size)
{
	if (!m->cap)
		return -1;
	for (size_t i = blob_hash(sha, size) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		long v = m->slots[i];
		if (v < 0)
			return -1;
		if (blobs[v].size == size && memcmp(blobs[v].sha, sha, 32) == 0)
			return v;
	}
}

static int map_insert(struct blob_map *m, const struct blob *blobs, long idx)
{
	if (2 * (m->n + 1) > m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 1024;
		long *s = malloc(cap * sizeof(*s));
		if (!s)
			return -ENOMEM;
		for (size_t i = 0; i < cap; i++)
			s[i] = -1;
		for (size_t i = 0; i < m->cap; i++) {
			long v = m->slots[i];
			if (v < 0)
				continue;
			size_t j = blob_hash(blobs[v].sha, blobs[v].size) & (cap - 1);
			while (s[j] >= 0)
				j = (j + 1) & (cap - 1);
			s[j] = v;
		}
		free(m->slots);
		m->slots = s;
		m->cap = cap;
	}
	size_t j = blob_hash(blobs[idx].sha, blobs[idx].size) & (m->cap - 1);
	while (m->slots[j] >= 0)
		j = (j + 1) & (m->cap - 1);
	m->slots[j] = idx;
	m->n++;
	return 0;
}

/* Sizes written to this pack so far: a later file of the same size may be a duplicate. */
static bool size_seen(const struct blob *blobs, size_t n, uint64_t size)
{
	/* Only consulted for files >= PREHASH_BELOW, of which a backup has few; linear is fine. */
	for (size_t i = 0; i < n; i++)
		if (blobs[i].size == size)
			return true;
	return false;
}

struct create_opts {
	const char *store;
	const char *name;
	const char *node, *cluster, *datacenter, *host_id;
	const char *cassandra_conf;
	int level;
	unsigned threads;
	unsigned frame_kib;
	bool json;
	bool take_snapshot;
	const char *nodetool;
	struct scan_opts scan;
};

static bool valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 200 || s[0] == '.' || s[0] == '-')
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@+-") == n;
}

/* Reads "key: value" (cassandra.yaml) or "key=value" (cassandra-rackdc.properties) from a
 * config file; quotes around the value are dropped. NULL when absent. */
static char *conf_value(const char *path, const char *key, char sep)
{
	char *text = NULL;
	if (read_small_file(path, 4 << 20, &text, NULL) < 0)
		return NULL;
	char *res = NULL;
	size_t klen = strlen(key);
	for (char *line = strtok(text, "\n"); line && !res; line = strtok(NULL, "\n")) {
		line += strspn(line, " \t");
		if (strncmp(line, key, klen) != 0)
			continue;
		char *p = line + klen;
		p += strspn(p, " \t");
		if (*p != sep)
			continue;
		p++;
		p += strspn(p, " \t");
		size_t len = strcspn(p, "#\r");
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len >= 2 && (p[0] == '\'' || p[0] == '"') && p[len - 1] == p[0]) {
			p++;
			len -= 2;
		}
		res = strndup(p, len);
	}
	free(text);
	return res;
}

static void create_usage(FILE *f)
{
	fprintf(f,
		"usage: cassbackup create --store DIR --data-dir DIR [--data-dir DIR ...] --snapshot TAG\n"
		"                         [--name NAME] [--keyspace KS ...] [--table KS.TABLE ...]\n"
		"                         [--include-system] [--node NAME] [--cluster NAME]\n"
		"                         [--datacenter NAME] [--host-id UUID] [--cassandra-conf DIR]\n"
		"                         [--level N] [--threads N] [--frame-kib N] [--json]\n"
		"                         [--take-snapshot [--nodetool PATH]]\n"
		"\n"
		"Backs up <data-dir>/<ks>/<table>-<id>/snapshots/<TAG>/ of every selected table.\n"
		"NAME defaults to TAG; --node to this host's name; --cluster and --datacenter to\n"
		"cluster_name in DIR/cassandra.yaml and dc in DIR/cassandra-rackdc.properties\n"
		"(DIR: --cassandra-conf, default /etc/cassandra). --level: zstd level (default 3);\n"
		"--threads: compression threads (default: all cores). --frame-kib: tar stream per zstd\n"
		"frame (default 1024); smaller frames make random reads through the mount cheaper and\n"
		"compress a little worse.\n"
		"--take-snapshot runs 'nodetool snapshot -t TAG [KS...]' first and, whatever happens,\n"
		"'nodetool clearsnapshot -t TAG' after, so no hard links are left pinning old sstables.\n");
}

struct backup_state {
	struct create_opts *o;
	catalog *cat;
	struct scan_result scan;
	struct plan **plans; /* per table, per file */
	struct blob *blobs;  /* written to this pack */
	size_t nblobs, blobs_cap;
	struct blob_map map;
	struct store_tmp tmp;
	pack_writer *pw;
	struct progress prog;
	uint64_t new_bytes, compressed;
	uint32_t frames;
	int64_t created_ns;
	char *node, *cluster, *datacenter;
};

static int member_path(struct strbuf *sb, const struct scan_table *t, const struct scan_file *f)
{
	sb->len = 0;
	if (f->dir >= 0)
		return sb_printf(sb, "%s/%s/%s/%s", t->keyspace, t->dirname, t->dirs[f->dir].name, f->name);
	return sb_printf(sb, "%s/%s/%s", t->keyspace, t->dirname, f->name);
}

static int64_t mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* Decides and does the work for one file: find its bytes in the store, or write them. */
static int back_up_file(struct backup_state *s, const struct scan_file *f, struct plan *pl,
			const struct strbuf *path)
{
	uint64_t size = (uint64_t)f->st.st_size;
	int fd = open(f->src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int r = -errno;
		errorf("cannot read %s: %s", f->src, strerror(errno));
		return r;
	}
	struct stat st = {0};
	int r = fstat(fd, &st) < 0 ? -errno : 0;
	if (r == 0 && (st.st_size != f->st.st_size || st.st_ino != f->st.st_ino))
		r = -ESTALE;
	bool prehashed = false, wrote = false;
	char *mem = NULL; /* the file's bytes, when read into memory */
	struct pack_member m = {
		.path = path->buf,
		.size = size,
		.mode = st.st_mode,
		.uid = st.st_uid,
		.gid = st.st_gid,
		.mtime_ns = mtime_ns(&st),
	};
	if (r == 0 && (size < PREHASH_BELOW || size_seen(s->blobs, s->nblobs, size) ||
		       (r = catalog_blob_size_exists(s->cat, size)) == 1)) {
		if (size <= IN_MEMORY_BELOW) {
			mem = malloc(size + 1);
			ssize_t n = mem ? pread_full(fd, mem, size + 1, 0) : -ENOMEM;
			r = n < 0 ? (int)n : (uint64_t)n != size ? -ESTALE : sha256_buf(mem, size, pl->sha);
		} else {
			r = sha256_fd(fd, size, pl->sha, &cancel_requested, NULL, NULL);
		}
		prehashed = true;
		if (r == 0) {
			long i = map_find(&s->map, s->blobs, pl->sha, size);
			if (i >= 0) { /* same bytes as a file already in this pack: link to it */
				pl->pending = i;
				r = pack_writer_add_hardlink(s->pw, &m, s->blobs[i].member);
				goto out;
			}
			r = catalog_find_blob(s->cat, pl->sha, size, &pl->stored_id);
			if (r == 1) {
				r = 0;
				goto out;
			}
		}
	}
	if (r < 0)
		goto out;

	if (s->nblobs == s->blobs_cap) {
		size_t cap = s->blobs_cap ? 2 * s->blobs_cap : 256;
		struct blob *b = realloc(s->blobs, cap * sizeof(*b));
		if (!b) {
			r = -ENOMEM;
			goto out;
		}
		s->blobs = b;
		s->blobs_cap = cap;
	}
	struct blob *b = &s->blobs[s->nblobs];
	*b = (struct blob){.size = size};
	if (mem) {
		r = pack_writer_add_buffer(s->pw, &m, mem, &b->offset);
		memcpy(b->sha, pl->sha, 32);
		if (r == 0)
			progress_add(&s->prog, size);
	} else {
		r = pack_writer_add_fd(s->pw, &m, fd, b->sha, &b->offset, &cancel_requested, progress_add,
				       &s->prog);
	}
	wrote = true;
	if (r == 0 && prehashed && memcmp(b->sha, pl->sha, 32) != 0)
		r = -ESTALE;
	if (r == 0) {
		memcpy(pl->sha, b->sha, 32);
		long i = map_find(&s->map, s->blobs, b->sha, size);
		if (i >= 0) { /* same bytes as a file written earlier in this run */
			pl->pending = i;
		} else {
			b->member = strdup(path->buf);
			if (!b->member) {
				r = -ENOMEM;
				goto out;
			}
			pl->pending = (long)s->nblobs++;
			s->new_bytes += size;
			r = map_insert(&s->map, s->blobs, pl->pending);
		}
	}
out:
	free(mem);
	close(fd);
	if (r == -ESTALE)
		errorf("cannot back up %s: the file changed while it was being read", f->src);
	else if (r == -ENOSPC || r == -EDQUOT)
		errorf("cannot write pack %s: %s", s->tmp.path, strerror(-r));
	else if (r < 0 && r != -ECANCELED)
		errorf("cannot back up %s: %s%s%s", f->src, strerror(-r),
		       pack_writer_errmsg(s->pw) ? ": " : "",
		       pack_writer_errmsg(s->pw) ? pack_writer_errmsg(s->pw) : "");
	if (r < 0)
		return r;
	if (!wrote)
		progress_add(&s->prog, size); /* found in the store: done without writing */
	progress_file_done(&s->prog);
	return 0;
}

static int build_manifest(struct backup_state *s, struct strbuf *j)
{
	struct create_opts *o = s->o;
	char created[64], hex[65];
	format_time_utc(s->created_ns, created, sizeof(created));
	int r = sb_puts(j, "{\n  \"format\": \"cassbackup-manifest-1\",\n  \"backup\": {\"name\": ");
	r |= sb_json_str(j, o->name);
	r |= sb_puts(j, ", \"cluster\": ");
	r |= sb_json_str(j, s->cluster);
	r |= sb_puts(j, ", \"datacenter\": ");
	r |= sb_json_str(j, s->datacenter);
	r |= sb_puts(j, ", \"node\": ");
	r |= sb_json_str(j, s->node);
	r |= sb_puts(j, ", \"host_id\": ");
	r |= sb_json_str(j, o->host_id ? o->host_id : "");
	r |= sb_puts(j, ", \"snapshot_tag\": ");
	r |= sb_json_str(j, o->scan.tag);
	r |= sb_printf(j, ", \"created\": \"%s\", \"created_ns\": %lld},\n  \"tables\": [", created,
		       (long long)s->created_ns);
	for (size_t i = 0; i < s->scan.ntables; i++) {
		const struct scan_table *t = &s->scan.tables[i];
		r |= sb_puts(j, i ? ",\n    {\"keyspace\": " : "\n    {\"keyspace\": ");
		r |= sb_json_str(j, t->keyspace);
		r |= sb_puts(j, ", \"table\": ");
		r |= sb_json_str(j, t->table);
		r |= sb_puts(j, ", \"table_id\": ");
		r |= sb_json_str(j, t->table_id);
		r |= sb_puts(j, ", \"dir\": ");
		r |= sb_json_str(j, t->dirname);
		r |= sb_puts(j, "}");
	}
	r |= sb_puts(j, "\n  ],\n  \"files\": [");
	struct strbuf p = {0};
	bool first = true;
	for (size_t i = 0; i < s->scan.ntables; i++) {
		const struct scan_table *t = &s->scan.tables[i];
		for (size_t k = 0; k < t->nfiles; k++) {
			const struct scan_file *f = &t->files[k];
			r |= member_path(&p, t, f);
			hex_encode(s->plans[i][k].sha, 32, hex);
			r |= sb_puts(j, first ? "\n    {\"path\": " : ",\n    {\"path\": ");
			first = false;
			r |= sb_json_str(j, p.buf);
			r |= sb_printf(j, ", \"size\": %llu, \"mode\": %u, \"uid\": %u, \"gid\": %u, "
				       "\"mtime_ns\": %lld, \"sha256\": \"%s\"}",
				       (unsigned long long)f->st.st_size, f->st.st_mode & 07777,
				       f->st.st_uid, f->st.st_gid, (long long)mtime_ns(&f->st), hex);
		}
	}
	sb_free(&p);
	r |= sb_puts(j, "\n  ],\n  \"blobs\": [");
	for (size_t i = 0; i < s->nblobs; i++) {
		hex_encode(s->blobs[i].sha, 32, hex);
		r |= sb_printf(j, "%s\n    {\"sha256\": \"%s\", \"size\": %llu, \"offset\": %llu}",
			       i ? "," : "", hex, (unsigned long long)s->blobs[i].size,
			       (unsigned long long)s->blobs[i].offset);
	}
	r |= sb_puts(j, "\n  ]\n}\n");
	return r ? -ENOMEM : 0;
}

static struct cb_dir_attr dir_attr(const struct stat *st)
{
	return (struct cb_dir_attr){
		.mode = st->st_mode & 07777,
		.uid = st->st_uid,
		.gid = st->st_gid,
		.mtime_ns = mtime_ns(st),
	};
}

/* One transaction: the pack, its blobs, the backup and its tree. */
static int register_backup(struct backup_state *s, int64_t *backup_id)
{
	catalog *c = s->cat;
	int64_t pack_id, ks_row = 0, id;
	const char *cur_ks = NULL;
	int r = catalog_begin(c);
	if (r < 0)
		return r;
	if (catalog_backup_exists(c, s->o->name) == 1) {
		r = -EEXIST;
		goto fail;
	}
	r = catalog_add_pack(c, s->tmp.relpath, s->compressed, s->frames, s->created_ns, &pack_id);
	for (size_t i = 0; r == 0 && i < s->nblobs; i++)
		r = catalog_add_blob(c, s->blobs[i].sha, s->blobs[i].size, pack_id, s->blobs[i].offset,
				     &s->blobs[i].id);
	struct cb_backup_info b = {
		.name = s->o->name,
		.cluster = s->cluster,
		.datacenter = s->datacenter,
		.node = s->node,
		.host_id = s->o->host_id,
		.snapshot_tag = s->o->scan.tag,
		.created_ns = s->created_ns,
		.pack_id = pack_id,
		.files = s->scan.nfiles,
		.bytes = s->scan.bytes,
		.new_bytes = s->new_bytes,
		.stored_bytes = s->compressed,
	};
	if (r == 0)
		r = catalog_add_backup(c, &b, backup_id);
	for (size_t i = 0; r == 0 && i < s->scan.ntables; i++) {
		const struct scan_table *t = &s->scan.tables[i];
		struct cb_dir_attr a;
		if (!cur_ks || strcmp(cur_ks, t->keyspace) != 0) {
			a = dir_attr(&t->ks_st);
			if ((r = catalog_add_keyspace(c, *backup_id, t->keyspace, &a, &ks_row)) < 0)
				break;
			cur_ks = t->keyspace;
		}
		int64_t table_row;
		a = dir_attr(&t->table_st);
		r = catalog_add_table(c, *backup_id, ks_row, t->table, t->table_id, t->schema_cql, &a,
				      &table_row);
		int64_t *dir_rows = calloc(t->ndirs + 1, sizeof(*dir_rows));
		if (r == 0 && !dir_rows)
			r = -ENOMEM;
		for (size_t d = 0; r == 0 && d < t->ndirs; d++) {
			a = dir_attr(&t->dirs[d].st);
			r = catalog_add_dir(c, table_row, t->dirs[d].name, &a, &dir_rows[d]);
		}
		for (size_t k = 0; r == 0 && k < t->nfiles; k++) {
			const struct scan_file *f = &t->files[k];
			const struct plan *pl = &s->plans[i][k];
			struct cb_file_info fi = {
				.backup_id = *backup_id,
				.table_row = table_row,
				.dir_id = f->dir >= 0 ? dir_rows[f->dir] : 0,
				.name = f->name,
				.size = (uint64_t)f->st.st_size,
				.mode = f->st.st_mode & 07777,
				.uid = f->st.st_uid,
				.gid = f->st.st_gid,
				.mtime_ns = mtime_ns(&f->st),
				.blob_id = pl->pending >= 0 ? s->blobs[pl->pending].id : pl->stored_id,
			};
			r = catalog_add_file(c, &fi, &id);
		}
		free(dir_rows);
	}
	if (r == 0)
		r = catalog_commit(c);
	if (r == 0)
		return 0;
fail:
	catalog_rollback(c);
	return r;
}

static int parse_opts(int argc, char **argv, struct create_opts *o)
{
	static const struct option opts[] = {
		{"store", required_argument, NULL, 's'},
		{"name", required_argument, NULL, 'n'},
		{"data-dir", required_argument, NULL, 'd'},
		{"snapshot", required_argument, NULL, 't'},
		{"keyspace", required_argument, NULL, 'k'},
		{"table", required_argument, NULL, 'T'},
		{"include-system", no_argument, NULL, 'S'},
		{"node", required_argument, NULL, 'N'},
		{"cluster", required_argument, NULL, 'C'},
		{"datacenter", required_argument, NULL, 'D'},
		{"host-id", required_argument, NULL, 'H'},
		{"cassandra-conf", required_argument, NULL, 'c'},
		{"level", required_argument, NULL, 'l'},
		{"threads", required_argument, NULL, 'j'},
		{"frame-kib", required_argument, NULL, 'F'},
		{"json", no_argument, NULL, 'J'},
		{"take-snapshot", no_argument, NULL, 'P'},
		{"nodetool", required_argument, NULL, 'X'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int c;
	char *end;
	long v;
	while ((c = getopt_long(argc, argv, "s:n:d:t:k:T:hj:l:", opts, NULL)) != -1) {
		switch (c) {
		case 's': o->store = optarg; break;
		case 'n': o->name = optarg; break;
		case 'd': if (ptrv_push(&o->scan.data_dirs, &o->scan.ndata_dirs, optarg)) return 1; break;
		case 't': o->scan.tag = optarg; break;
		case 'k': if (ptrv_push(&o->scan.keyspaces, &o->scan.nkeyspaces, optarg)) return 1; break;
		case 'T': if (ptrv_push(&o->scan.tables, &o->scan.ntables, optarg)) return 1; break;
		case 'S': o->scan.include_system = true; break;
		case 'N': o->node = optarg; break;
		case 'C': o->cluster = optarg; break;
		case 'D': o->datacenter = optarg; break;
		case 'H': o->host_id = optarg; break;
		case 'c': o->cassandra_conf = optarg; break;
		case 'J': o->json = true; break;
		case 'P': o->take_snapshot = true; break;
		case 'X': o->nodetool = optarg; break;
		case 'l':
			v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 19) {
				errorf("--level %s: expected a zstd level from 1 to 19", optarg);
				return 2;
			}
			o->level = (int)v;
			break;
		case 'j':
			v = strtol(optarg, &end, 10);
			if (*end || v < 0 || v > 256) {
				errorf("--threads %s: expected a number from 0 to 256", optarg);
				return 2;
			}
			o->threads = (unsigned)v;
			break;
		case 'F':
			v = strtol(optarg, &end, 10);
			if (*end || v < 64 || v > 65536) {
				errorf("--frame-kib %s: expected KiB from 64 to 65536", optarg);
				return 2;
			}
			o->frame_kib = (unsigned)v;
			break;
		case 'h': create_usage(stdout); exit(0);
		default: return 2;
		}
	}
	if (optind < argc) {
		errorf("unexpected argument '%s'", argv[optind]);
		return 2;
	}
	if (!o->store)
		o->store = config_get("store");
	if (!o->scan.ndata_dirs)
		config_get_all("data_dir", &o->scan.data_dirs, &o->scan.ndata_dirs);
	if (!o->cassandra_conf)
		o->cassandra_conf = config_get("cassandra_conf");
	if (!o->cassandra_conf)
		o->cassandra_conf = "/etc/cassandra";
	if (!o->store || !o->scan.ndata_dirs || !o->scan.tag) {
		errorf("create needs --store, --data-dir and --snapshot (see 'cassbackup create --help')");
		return 2;
	}
	if (!valid_name(o->scan.tag) && !o->name) {
		errorf("snapshot tag '%s' cannot serve as a backup name; give --name", o->scan.tag);
		return 2;
	}
	if (!o->name)
		o->name = o->scan.tag;
	if (!valid_name(o->name)) {
		errorf("backup name '%s': use letters, digits and . _ : @ + - (not first), at most 200",
		       o->name);
		return 2;
	}
	return 0;
}

static void free_opts(struct create_opts *o)
{
	free(o->scan.data_dirs);
	free(o->scan.keyspaces);
	free(o->scan.tables);
}

static int do_create(struct create_opts *po)
{
	struct create_opts o = *po;
	int r;
	struct backup_state s = {.o = &o, .tmp = {.fd = -1}};
	struct strbuf err = {0};
	int rc = 1;
	double t0 = mono_seconds();

	if (open_store(o.store, 0, &s.cat) < 0)
		goto out;
	unsigned reclaimed;
	r = store_reclaim_tmp(o.store, &reclaimed);
	if (r < 0)
		errorf("cannot clean %s/tmp: %s, ignoring", o.store, strerror(-r));
	else if (reclaimed)
		fprintf(stderr, "cassbackup: removed %u unfinished pack(s) left in %s/tmp by an "
			"interrupted backup\n", reclaimed, o.store);
	r = catalog_backup_exists(s.cat, o.name);
	if (r != 0) {
		if (r > 0)
			errorf("backup %s already exists in %s; choose another --name", o.name, o.store);
		else
			errorf("cannot read catalog of %s: %s", o.store, catalog_errmsg(s.cat));
		goto out;
	}

	r = scan_snapshot(&o.scan, &s.scan, &err);
	if (r < 0) {
		errorf("%s", err.buf);
		goto out;
	}

	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	struct strbuf confp = {0};
	sb_printf(&confp, "%s/cassandra.yaml", o.cassandra_conf);
	s.cluster = o.cluster ? strdup(o.cluster) : conf_value(confp.buf, "cluster_name", ':');
	confp.len = 0;
	sb_printf(&confp, "%s/cassandra-rackdc.properties", o.cassandra_conf);
	s.datacenter = o.datacenter ? strdup(o.datacenter) : conf_value(confp.buf, "dc", '=');
	sb_free(&confp);
	s.node = strdup(o.node ? o.node : host);
	if (!s.cluster)
		s.cluster = strdup("");
	if (!s.datacenter)
		s.datacenter = strdup("");
	s.plans = calloc(s.scan.ntables, sizeof(*s.plans));
	if (!s.node || !s.cluster || !s.datacenter || !s.plans) {
		errorf("out of memory");
		goto out;
	}
	for (size_t i = 0; i < s.scan.ntables; i++) {
		s.plans[i] = calloc(s.scan.tables[i].nfiles + 1, sizeof(struct plan));
		if (!s.plans[i]) {
			errorf("out of memory");
			goto out;
		}
		for (size_t k = 0; k < s.scan.tables[i].nfiles; k++)
			s.plans[i][k].pending = -1;
	}

	install_cancel_handlers();
	s.created_ns = now_ns();
	r = store_tmp_create(o.store, &s.tmp);
	if (r < 0) {
		errorf("cannot create a pack in %s/tmp: %s", o.store, strerror(-r));
		goto out;
	}
	r = pack_writer_new(&s.pw, s.tmp.fd, o.level, o.threads, (size_t)o.frame_kib << 10);
	if (r < 0) {
		errorf("cannot start pack %s: %s", s.tmp.path, strerror(-r));
		goto out;
	}
	progress_init(&s.prog, "backing up", s.scan.bytes, s.scan.nfiles);
	struct strbuf path = {0};
	for (size_t i = 0; r == 0 && i < s.scan.ntables; i++) {
		const struct scan_table *t = &s.scan.tables[i];
		for (size_t k = 0; r == 0 && k < t->nfiles; k++) {
			if ((r = member_path(&path, t, &t->files[k])) < 0)
				break;
			r = back_up_file(&s, &t->files[k], &s.plans[i][k], &path);
		}
	}
	sb_free(&path);
	progress_end(&s.prog);
	if (r < 0)
		goto out;

	/* The manifest: the pack describes the backup it completes. */
	struct strbuf man = {0}, mpath = {0};
	r = build_manifest(&s, &man);
	if (r == 0)
		r = sb_printf(&mpath, ".cassbackup/%s.manifest.json", o.name);
	if (r == 0) {
		struct pack_member m = {
			.path = mpath.buf,
			.size = man.len,
			.mode = 0644,
			.uid = getuid(),
			.gid = getgid(),
			.mtime_ns = s.created_ns,
		};
		uint64_t off;
		r = pack_writer_add_buffer(s.pw, &m, man.buf, &off);
	}
	sb_free(&man);
	sb_free(&mpath);
	if (r == 0)
		r = pack_writer_finish(s.pw, &s.compressed, &s.frames);
	if (r == 0 && cancel_requested)
		r = -ECANCELED;
	if (r < 0) {
		if (r != -ECANCELED)
			errorf("cannot write pack %s: %s", s.tmp.path, strerror(-r));
		goto out;
	}
	r = store_tmp_commit(o.store, &s.tmp);
	if (r < 0) {
		errorf("cannot move pack into %s/%s: %s", o.store, s.tmp.relpath, strerror(-r));
		goto out;
	}
	int64_t backup_id;
	r = register_backup(&s, &backup_id);
	if (r == -EEXIST) {
		errorf("backup %s was created by another process meanwhile; nothing changed", o.name);
		goto out;
	} else if (r < 0) {
		errorf("cannot register backup in %s/catalog.db: %s", o.store, catalog_errmsg(s.cat));
		goto out;
	}
	rc = 0;

	double secs = mono_seconds() - t0;
	char total[32], fresh[32], stored[32], rate[32];
	format_bytes(s.scan.bytes, total, sizeof(total));
	format_bytes(s.new_bytes, fresh, sizeof(fresh));
	format_bytes(s.compressed, stored, sizeof(stored));
	format_bytes(secs > 0 ? (uint64_t)((double)s.scan.bytes / secs) : 0, rate, sizeof(rate));
	if (o.json) {
		struct strbuf j = {0};
		sb_puts(&j, "{\"name\": ");
		sb_json_str(&j, o.name);
		sb_printf(&j, ", \"tables\": %zu, \"files\": %llu, \"bytes\": %llu, \"new_bytes\": %llu, "
			  "\"stored_bytes\": %llu, \"seconds\": %.3f}\n", s.scan.ntables,
			  (unsigned long long)s.scan.nfiles, (unsigned long long)s.scan.bytes,
			  (unsigned long long)s.new_bytes, (unsigned long long)s.compressed, secs);
		fputs(j.buf, stdout);
		sb_free(&j);
	} else {
		printf("backup %s: %zu tables, %llu files, %s; %s new, %s written to %s; %.1f s (%s/s)\n",
		       o.name, s.scan.ntables, (unsigned long long)s.scan.nfiles, total, fresh, stored,
		       s.tmp.relpath, secs, rate);
	}
out:
	if (rc != 0 && cancel_requested)
		errorf("interrupted by signal %d; no backup was made, nothing changed",
		       (int)cancel_requested);
	pack_writer_free(s.pw);
	if (s.tmp.path)
		store_tmp_release(&s.tmp, rc == 0);
	for (size_t i = 0; s.plans && i < s.scan.ntables; i++)
		free(s.plans[i]);
	free(s.plans);
	for (size_t i = 0; i < s.nblobs; i++)
		free(s.blobs[i].member);
	free(s.blobs);
	free(s.map.slots);
	free(s.node);
	free(s.cluster);
	free(s.datacenter);
	scan_result_free(&s.scan);
	catalog_close(s.cat);
	sb_free(&err);
	if (rc != 0 && cancel_requested)
		return 128 + (int)cancel_requested;
	return rc;
}

/* nodetool snapshot -t TAG [KS...] or [-kt KS.T,...]. */
static int take_snapshot(const struct create_opts *o)
{
	struct strv a = {0};
	int r = nodetool_argv(&a, o->nodetool);
	r = r ?: strv_push(&a, "snapshot") ?: strv_push(&a, "-t") ?: strv_push(&a, o->scan.tag);
	if (r == 0 && o->scan.ntables) {
		struct strbuf kt = {0};
		for (size_t i = 0; i < o->scan.ntables; i++)
			sb_printf(&kt, "%s%s", i ? "," : "", o->scan.tables[i]);
		r = strv_push(&a, "-kt") ?: strv_push(&a, kt.buf);
		sb_free(&kt);
	}
	for (size_t i = 0; r == 0 && !o->scan.ntables && i < o->scan.nkeyspaces; i++)
		r = strv_push(&a, o->scan.keyspaces[i]);
	if (r < 0) {
		strv_free(&a);
		return r;
	}
	char cmd[2048];
	format_command(a.v, cmd, sizeof(cmd));
	int s = exec_run(a.v, NULL);
	if (s != 0)
		errorf("%s failed (exit status %d); no backup was made", cmd, s);
	strv_free(&a);
	return s == 0 ? 0 : -EIO;
}

static void clear_snapshot(const struct create_opts *o)
{
	struct strv a = {0};
	if (nodetool_argv(&a, o->nodetool) ?: strv_push(&a, "clearsnapshot") ?: strv_push(&a, "-t") ?:
	    strv_push(&a, o->scan.tag)) {
		strv_free(&a);
		return;
	}
	char cmd[2048];
	format_command(a.v, cmd, sizeof(cmd));
	int s = exec_run(a.v, NULL);
	if (s != 0)
		errorf("%s failed (exit status %d): snapshot %s is still on disk and pins its sstables; "
		       "clear it by hand", cmd, s, o->scan.tag);
	strv_free(&a);
}

int cmd_create(int argc, char **argv)
{
	struct create_opts o = {.level = 3};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	o.threads = ncpu > 0 ? (unsigned)ncpu : 1;
	int r = parse_opts(argc, argv, &o);
	if (r) {
		free_opts(&o);
		return r;
	}
	if (!o.take_snapshot) {
		r = do_create(&o);
	} else {
		/* Check what can be checked before Cassandra is asked for a snapshot; once taken,
		 * the snapshot is cleared whatever happens. */
		catalog *cat;
		if (open_store(o.store, CATALOG_READONLY, &cat) < 0) {
			free_opts(&o);
			return 1;
		}
		r = catalog_backup_exists(cat, o.name);
		catalog_close(cat);
		if (r != 0) {
			errorf("backup %s already exists in %s; choose another --name", o.name, o.store);
			free_opts(&o);
			return 1;
		}
		install_cancel_handlers();
		r = take_snapshot(&o) < 0 ? 1 : do_create(&o);
		clear_snapshot(&o);
		if (r == 0 && cancel_requested)
			r = 128 + (int)cancel_requested;
	}
	free_opts(&o);
	return r;
}
