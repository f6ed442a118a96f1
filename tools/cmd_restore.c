/* cassbackup restore: copy a backup's tables into a node's own live table directories.
 *
 * Safe to run twice, and it says what it did:
 *   - Everything is planned first; if any table can't be placed (table missing: create the
 *     schema; several table directories: choose with --table-dir), nothing is written.
 *   - An sstable already in the target with the same bytes (under any generation) is skipped,
 *     so a second run copies nothing. One whose identifier is taken by other bytes is restored
 *     under a fresh generation, all its components renamed together.
 *   - Files are written under temporary names, checked against the backup's SHA-256 as they are
 *     written, fsynced, and renamed into place with Data.db last, so Cassandra never sees a
 *     half-copied sstable. manifest.json and schema.cql stay out of live directories.
 */
#include "backup_files.h"
#include "cli.h"
#include "exec.h"
#include "hash.h"
#include "packread.h"
#include "sstable.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (1u << 20)

/* One sstable (or lone file) of a table, and what restore will do with it. */
struct unit {
	const char *dir;     /* "" or ".<index>" */
	size_t first, count; /* files in the table's vlist */
	enum { U_COPY, U_RENAME, U_PRESENT } action;
	uint64_t new_gen;    /* U_RENAME */
	char *present_as;    /* U_PRESENT: the identifier found in the target */
};

struct plan_table {
	struct cb_table_row t;
	char *target;        /* live table directory */
	struct vlist files;  /* without manifest.json / schema.cql */
	struct unit *units;
	size_t nunits;
	uid_t uid;
	gid_t gid;
};

struct restore_opts {
	const char *store, *name;
	char **data_dirs, **keyspaces, **tables, **table_dirs;
	size_t ndata_dirs, nkeyspaces, ntables, ntable_dirs;
	bool dry_run, import, refresh, json;
	const char *owner, *nodetool;
	bool have_owner;
	uid_t uid;
	gid_t gid;
};

/* The live directories of ks.table in the data dirs: <table>-<32 hex> (or a bare <table>). */
static int find_table_dirs(const struct restore_opts *o, const char *ks, const char *table,
			   struct strbuf *found, size_t *n)
{
	*n = 0;
	for (size_t i = 0; i < o->ndata_dirs; i++) {
		struct strbuf kd = {0};
		sb_printf(&kd, "%s/%s", o->data_dirs[i], ks);
		DIR *d = opendir(kd.buf);
		struct dirent *e;
		size_t tl = strlen(table);
		while (d && (e = readdir(d))) {
			const char *nm = e->d_name;
			bool match = !strcmp(nm, table) ||
				     (!strncmp(nm, table, tl) && nm[tl] == '-' && strlen(nm + tl + 1) == 32 &&
				      strspn(nm + tl + 1, "0123456789abcdef") == 32);
			struct stat st;
			struct strbuf p = {0};
			sb_printf(&p, "%s/%s", kd.buf, nm);
			if (match && stat(p.buf, &st) == 0 && S_ISDIR(st.st_mode)) {
				sb_append(found, p.buf, p.len + 1);
				(*n)++;
			}
			sb_free(&p);
		}
		if (d)
			closedir(d);
		sb_free(&kd);
	}
	return 0;
}

static int file_sha(const char *path, uint64_t size, unsigned char sha[32])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = sha256_fd(fd, size, sha, &cancel_requested, NULL, NULL);
	close(fd);
	return r;
}

/* Does the target hold this unit's files, with these bytes, under identifier prefix p? */
static bool unit_present_as(const struct plan_table *pt, const struct unit *u, const char *prefix)
{
	for (size_t k = u->first; k < u->first + u->count; k++) {
		const struct vf *f = &pt->files.v[k];
		size_t pl = sstable_prefix_len(f->name);
		struct strbuf p = {0};
		sb_printf(&p, "%s%s%s/%s%s", pt->target, *f->dir ? "/" : "", f->dir, prefix, f->name + pl);
		struct stat st;
		unsigned char sha[32];
		bool same = stat(p.buf, &st) == 0 && (uint64_t)st.st_size == f->size &&
			    file_sha(p.buf, f->size, sha) == 0 && !memcmp(sha, f->want, 32);
		sb_free(&p);
		if (!same)
			return false;
	}
	return true;
}

/* Largest numeric generation in dir (0 if none). */
static uint64_t max_generation(const char *dir)
{
	uint64_t m = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		uint64_t g = sstable_numeric_generation(e->d_name);
		if (g > m)
			m = g;
	}
	if (d)
		closedir(d);
	return m;
}

/* Decides, per sstable, copy / rename / already present. */
static int plan_units(struct plan_table *pt)
{
	struct vlist *l = &pt->files;
	for (size_t i = 0; i < l->n;) {
		size_t pl = sstable_prefix_len(l->v[i].name);
		size_t j = i + 1;
		while (pl && j < l->n && !strcmp(l->v[j].dir, l->v[i].dir) &&
		       sstable_prefix_len(l->v[j].name) == pl && !strncmp(l->v[j].name, l->v[i].name, pl))
			j++;
		struct unit *u = realloc(pt->units, (pt->nunits + 1) * sizeof(*u));
		if (!u)
			return -ENOMEM;
		pt->units = u;
		pt->units[pt->nunits++] = (struct unit){.dir = l->v[i].dir, .first = i, .count = j - i};
		i = j;
	}
	/* Generations handed out so far, per directory: start above everything in the target and
	 * everything in the backup, so a new name never meets an old one. */
	uint64_t next_top = 0, next_idx[64] = {0};
	for (size_t ui = 0; ui < pt->nunits; ui++) {
		struct unit *u = &pt->units[ui];
		const struct vf *f0 = &l->v[u->first];
		size_t pl = sstable_prefix_len(f0->name);
		struct strbuf tdir = {0};
		sb_printf(&tdir, "%s%s%s", pt->target, *u->dir ? "/" : "", u->dir);
		char prefix[256];
		snprintf(prefix, sizeof(prefix), "%.*s", (int)pl, f0->name);
		bool taken = false;
		for (size_t k = u->first; k < u->first + u->count; k++) {
			struct strbuf p = {0};
			sb_printf(&p, "%s/%s", tdir.buf, l->v[k].name);
			taken |= access(p.buf, F_OK) == 0;
			sb_free(&p);
		}
		if (!pl) { /* not an sstable component: copy unless the same bytes are there */
			u->action = taken && unit_present_as(pt, u, "") ? U_PRESENT : U_COPY;
			if (taken && u->action != U_PRESENT)
				u->action = U_PRESENT; /* never overwrite a live file; say so below */
			sb_free(&tdir);
			continue;
		}
		if (taken && unit_present_as(pt, u, prefix)) {
			u->action = U_PRESENT;
			u->present_as = strdup(prefix);
			sb_free(&tdir);
			continue;
		}
		/* Restored before under another generation? Same Data.db bytes, same components. */
		DIR *d = opendir(tdir.buf);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			size_t el = sstable_prefix_len(e->d_name);
			if (!el || strcmp(e->d_name + el, "Data.db") || !strncmp(e->d_name, prefix, pl))
				continue;
			char other[256];
			snprintf(other, sizeof(other), "%.*s", (int)el, e->d_name);
			if (unit_present_as(pt, u, other)) {
				u->action = U_PRESENT;
				u->present_as = strdup(other);
				break;
			}
		}
		if (d)
			closedir(d);
		if (u->action == U_PRESENT) {
			sb_free(&tdir);
			continue;
		}
		if (!taken) {
			u->action = U_COPY;
		} else {
			uint64_t *next = !*u->dir ? &next_top : &next_idx[ui % 64];
			if (*next == 0) {
				uint64_t m = max_generation(tdir.buf);
				for (size_t k = 0; k < l->n; k++) {
					uint64_t g = sstable_numeric_generation(l->v[k].name);
					if (!strcmp(l->v[k].dir, u->dir) && g > m)
						m = g;
				}
				*next = m + 1;
			}
			u->action = U_RENAME;
			u->new_gen = (*next)++;
		}
		sb_free(&tdir);
	}
	return 0;
}

static int final_name(const struct unit *u, const struct vf *f, struct strbuf *out)
{
	out->len = 0;
	if (u->action == U_RENAME)
		return sstable_with_generation(f->name, u->new_gen, out);
	return sb_puts(out, f->name);
}

/* Copies one file from the packs to path, checking its SHA-256 on the way. */
static int copy_out(pack_cache *pc, const struct vf *f, const char *path, uid_t uid, gid_t gid,
		    struct progress *prog, char *why, size_t whylen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	char *buf = malloc(CHUNK);
	sha256_ctx *h = NULL;
	int r = buf ? sha256_new(&h) : -ENOMEM;
	for (uint64_t off = 0; r == 0 && off < f->size;) {
		size_t n = f->size - off < CHUNK ? (size_t)(f->size - off) : CHUNK;
		if (cancel_requested) {
			r = -ECANCELED;
			break;
		}
		r = pack_cache_read(pc, f->loc.pack_id, f->loc.pack_path, f->loc.offset + off, buf, n);
		if (r < 0) {
			snprintf(why, whylen, "%s: cannot read from %s: %s", f->name, f->loc.pack_path,
				 r == -ENOENT ? "pack file is missing" : r == -EIO ? "pack data is corrupt" : strerror(-r));
			break;
		}
		sha256_update(h, buf, n);
		if ((r = write_full(fd, buf, n)) < 0) {
			snprintf(why, whylen, "%s: %s", path, strerror(-r));
			break;
		}
		off += n;
		progress_add(prog, n);
	}
	unsigned char sha[32];
	if (r == 0 && (r = sha256_final(h, sha)) == 0 && memcmp(sha, f->want, 32) != 0) {
		snprintf(why, whylen, "%s: bytes read back differ from the backup's SHA-256", f->name);
		r = -EIO;
	}
	struct timespec ts[2] = {{.tv_sec = f->mtime_ns / 1000000000, .tv_nsec = f->mtime_ns % 1000000000},
				 {.tv_sec = f->mtime_ns / 1000000000, .tv_nsec = f->mtime_ns % 1000000000}};
	if (r == 0 && (fchmod(fd, f->mode & 07777) < 0 || fchown(fd, uid, gid) < 0 ||
		       futimens(fd, ts) < 0 || fsync(fd) < 0)) {
		r = -errno;
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
	}
	if (r == -ECANCELED)
		snprintf(why, whylen, "interrupted");
	sha256_free(h);
	free(buf);
	close(fd);
	return r;
}

struct totals {
	size_t tables, files, renamed, present;
	uint64_t bytes;
};

/* Restores one sstable: temp files, then renames with Data.db last. */
static int restore_unit(pack_cache *pc, struct plan_table *pt, struct unit *u, struct progress *prog,
			struct totals *tot)
{
	struct strbuf dir = {0}, fin = {0}, tmp = {0};
	sb_printf(&dir, "%s%s%s", pt->target, *u->dir ? "/" : "", u->dir);
	char why[1024] = "";
	int r = 0;
	size_t written = 0;
	char **tmps = calloc(u->count, sizeof(char *)), **fins = calloc(u->count, sizeof(char *));
	if (!tmps || !fins)
		r = -ENOMEM;
	for (size_t k = 0; r == 0 && k < u->count; k++) {
		const struct vf *f = &pt->files.v[u->first + k];
		final_name(u, f, &fin);
		tmp.len = 0;
		sb_printf(&tmp, "%s/.cassbackup-restore-%d-%s", dir.buf, (int)getpid(), fin.buf);
		fins[k] = strdup(fin.buf);
		tmps[k] = strdup(tmp.buf);
		r = copy_out(pc, f, tmp.buf, pt->uid, pt->gid, prog, why, sizeof(why));
		if (r == 0 || access(tmp.buf, F_OK) == 0)
			written = k + 1;
		progress_file_done(prog);
	}
	/* Data.db last: Cassandra finds an sstable by its Data.db. */
	for (int pass = 0; r == 0 && pass < 2; pass++) {
		for (size_t k = 0; r == 0 && k < u->count; k++) {
			bool data = strstr(fins[k], "-Data.db") != NULL;
			if (data != (pass == 1))
				continue;
			fin.len = 0;
			sb_printf(&fin, "%s/%s", dir.buf, fins[k]);
			if (rename(tmps[k], fin.buf) < 0) {
				r = -errno;
				snprintf(why, sizeof(why), "%s: %s", fin.buf, strerror(errno));
			} else {
				free(tmps[k]);
				tmps[k] = NULL;
			}
		}
	}
	if (r == 0)
		r = fsync_dir(dir.buf);
	if (r < 0) {
		for (size_t k = 0; k < written; k++)
			if (tmps[k])
				unlink(tmps[k]);
		if (r != -ECANCELED)
			errorf("cannot restore %s.%s into %s: %s", pt->t.keyspace, pt->t.table, dir.buf,
			       why[0] ? why : strerror(-r));
	} else {
		tot->files += u->count;
		for (size_t k = 0; k < u->count; k++)
			tot->bytes += pt->files.v[u->first + k].size;
		tot->renamed += u->action == U_RENAME;
	}
	for (size_t k = 0; k < u->count && tmps && fins; k++) {
		free(tmps[k]);
		free(fins[k]);
	}
	free(tmps);
	free(fins);
	sb_free(&dir);
	sb_free(&fin);
	sb_free(&tmp);
	return r;
}

static void print_plan(const struct plan_table *pt)
{
	printf("%s.%s -> %s\n", pt->t.keyspace, pt->t.table, pt->target);
	struct strbuf fin = {0};
	for (size_t i = 0; i < pt->nunits; i++) {
		const struct unit *u = &pt->units[i];
		const struct vf *f0 = &pt->files.v[u->first];
		size_t pl = sstable_prefix_len(f0->name);
		char what[300];
		snprintf(what, sizeof(what), "%s%s%.*s", u->dir, *u->dir ? "/" : "", pl ? (int)pl - 1 : (int)strlen(f0->name),
			 f0->name);
		if (u->action == U_PRESENT)
			printf("  skip    %s: already present%s%s\n", what, u->present_as ? " as " : "",
			       u->present_as ? u->present_as : "");
		else if (u->action == U_RENAME) {
			final_name(u, f0, &fin);
			printf("  rename  %s -> %.*s (identifier taken in the target)\n", what,
			       (int)sstable_prefix_len(fin.buf) - 1, fin.buf);
		} else
			printf("  copy    %s (%zu files)\n", what, u->count);
	}
	sb_free(&fin);
}

static void restore_usage(FILE *f)
{
	fprintf(f,
		"usage: cassbackup restore --store DIR NAME --data-dir DIR [--data-dir DIR ...]\n"
		"         [--keyspace KS ...] [--table KS.TABLE ...] [--table-dir KS.TABLE=PATH ...]\n"
		"         [--dry-run] [--owner USER[:GROUP]] [--import | --refresh] [--nodetool PATH]\n"
		"Copies the backup's tables into the live <table>-<id> directories of this node.\n"
		"Owner defaults to the owner of each target table directory. Without --import or\n"
		"--refresh it prints the nodetool command to run next.\n");
}

static int parse_owner(struct restore_opts *o, const char *spec)
{
	char *s = strdup(spec), *colon = strchr(s, ':');
	if (colon)
		*colon++ = '\0';
	struct passwd *pw = getpwnam(s);
	char *end;
	long n = strtol(s, &end, 10);
	int r = 0;
	if (pw) {
		o->uid = pw->pw_uid;
		o->gid = pw->pw_gid;
	} else if (*s && !*end && n >= 0) {
		o->uid = o->gid = (uid_t)n;
	} else {
		errorf("--owner %s: no such user", spec);
		r = -EINVAL;
	}
	if (r == 0 && colon && *colon) {
		struct group *gr = getgrnam(colon);
		n = strtol(colon, &end, 10);
		if (gr)
			o->gid = gr->gr_gid;
		else if (!*end && n >= 0)
			o->gid = (gid_t)n;
		else {
			errorf("--owner %s: no such group", spec);
			r = -EINVAL;
		}
	}
	o->have_owner = r == 0;
	free(s);
	return r;
}

int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {
		{"store", required_argument, NULL, 's'},
		{"data-dir", required_argument, NULL, 'd'},
		{"keyspace", required_argument, NULL, 'k'},
		{"table", required_argument, NULL, 'T'},
		{"table-dir", required_argument, NULL, 'D'},
		{"dry-run", no_argument, NULL, 'n'},
		{"owner", required_argument, NULL, 'o'},
		{"import", no_argument, NULL, 'I'},
		{"refresh", no_argument, NULL, 'R'},
		{"nodetool", required_argument, NULL, 'N'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct restore_opts o = {.nodetool = "nodetool"};
	const char *cfg_nodetool = config_get("nodetool");
	if (cfg_nodetool)
		o.nodetool = cfg_nodetool;
	int c, rc = 2;
	while ((c = getopt_long(argc, argv, "s:d:k:T:nh", opts, NULL)) != -1) {
		switch (c) {
		case 's': o.store = optarg; break;
		case 'd': ptrv_push(&o.data_dirs, &o.ndata_dirs, optarg); break;
		case 'k': ptrv_push(&o.keyspaces, &o.nkeyspaces, optarg); break;
		case 'T': ptrv_push(&o.tables, &o.ntables, optarg); break;
		case 'D': ptrv_push(&o.table_dirs, &o.ntable_dirs, optarg); break;
		case 'n': o.dry_run = true; break;
		case 'o': o.owner = optarg; break;
		case 'I': o.import = true; break;
		case 'R': o.refresh = true; break;
		case 'N': o.nodetool = optarg; break;
		case 'h': restore_usage(stdout); rc = 0; goto out_opts;
		default: goto out_opts;
		}
	}
	if (!o.store)
		o.store = config_get("store");
	if (!o.ndata_dirs)
		config_get_all("data_dir", &o.data_dirs, &o.ndata_dirs);
	if (optind + 1 != argc || !o.store || !o.ndata_dirs || (o.import && o.refresh)) {
		restore_usage(stderr);
		goto out_opts;
	}
	o.name = argv[optind];
	if (o.owner && parse_owner(&o, o.owner) < 0)
		goto out_opts;
	for (size_t i = 0; i < o.ntable_dirs; i++) {
		char *eq = strchr(o.table_dirs[i], '=');
		if (!eq || !strchr(o.table_dirs[i], '.') || strchr(o.table_dirs[i], '.') > eq) {
			errorf("--table-dir %s: expected KEYSPACE.TABLE=PATH", o.table_dirs[i]);
			goto out_opts;
		}
	}
	rc = 1;

	catalog *cat = NULL;
	pack_cache *pc = NULL;
	struct tables ts = {0};
	struct plan_table *plan = NULL;
	size_t nplan = 0;
	if (open_store(o.store, CATALOG_READONLY, &cat) < 0)
		goto out;
	if (pack_cache_new(&pc, o.store, 8u << 20) < 0 || load_tables(cat, o.store, o.name, &ts) < 0)
		goto out;
	plan = calloc(ts.n + 1, sizeof(*plan));

	/* 1. Plan: every table must have exactly one place to go. */
	bool bad = false, any = false;
	for (size_t i = 0; i < ts.n; i++) {
		const struct cb_table_row *t = &ts.v[i];
		if (!table_selected(o.keyspaces, o.nkeyspaces, o.tables, o.ntables, t->keyspace, t->table))
			continue;
		any = true;
		struct plan_table *pt = &plan[nplan++];
		pt->t = *t;
		char key[512];
		snprintf(key, sizeof(key), "%s.%s=", t->keyspace, t->table);
		for (size_t k = 0; k < o.ntable_dirs; k++)
			if (!strncmp(o.table_dirs[k], key, strlen(key)))
				pt->target = strdup(o.table_dirs[k] + strlen(key));
		if (!pt->target) {
			struct strbuf found = {0};
			size_t n;
			find_table_dirs(&o, t->keyspace, t->table, &found, &n);
			if (n == 1) {
				pt->target = strdup(found.buf);
			} else if (n == 0) {
				errorf("table %s.%s: no table directory for it in the data directories; create "
				       "the table first (e.g. cqlsh -f schema.cql), then run restore again. "
				       "Its schema.cql from the backup:", t->keyspace, t->table);
				fprintf(stderr, "%s", t->schema_cql ? t->schema_cql : "(not in the backup)\n");
				bad = true;
			} else {
				struct strbuf msg = {0};
				for (size_t off = 0; off < found.len; off += strlen(found.buf + off) + 1)
					sb_printf(&msg, "%s%s", off ? ", " : "", found.buf + off);
				errorf("table %s.%s: %zu table directories (%s); was it dropped and re-created? "
				       "Choose one with --table-dir %s.%s=PATH", t->keyspace, t->table, n, msg.buf,
				       t->keyspace, t->table);
				sb_free(&msg);
				bad = true;
			}
			sb_free(&found);
		}
		if (!pt->target)
			continue;
		char *abs = realpath(pt->target, NULL); /* nodetool runs elsewhere: give it absolute paths */
		if (abs) {
			free(pt->target);
			pt->target = abs;
		}
		struct stat st;
		if (stat(pt->target, &st) < 0 || !S_ISDIR(st.st_mode)) {
			errorf("table directory %s: %s", pt->target, errno ? strerror(errno) : "not a directory");
			bad = true;
			continue;
		}
		pt->uid = o.have_owner ? o.uid : st.st_uid;
		pt->gid = o.have_owner ? o.gid : st.st_gid;
		if (load_files(cat, o.store, t->row, &pt->files) < 0)
			goto out;
		size_t k = 0; /* snapshot metadata stays out of live directories */
		for (size_t j = 0; j < pt->files.n; j++) {
			struct vf *f = &pt->files.v[j];
			if (!*f->dir && (!strcmp(f->name, "manifest.json") || !strcmp(f->name, "schema.cql"))) {
				free(f->dir);
				free(f->name);
				continue;
			}
			pt->files.v[k++] = *f;
		}
		pt->files.n = k;
		if (plan_units(pt) < 0) {
			errorf("out of memory");
			goto out;
		}
	}
	for (size_t i = 0; !any && i < o.nkeyspaces + o.ntables; i++) {
		errorf("%s %s: not in backup %s", i < o.nkeyspaces ? "keyspace" : "table",
		       i < o.nkeyspaces ? o.keyspaces[i] : o.tables[i - o.nkeyspaces], o.name);
		bad = true;
		break;
	}
	if (bad) {
		errorf("nothing was restored");
		goto out;
	}
	if (o.dry_run) {
		for (size_t i = 0; i < nplan; i++)
			print_plan(&plan[i]);
		printf("dry run: nothing was written\n");
		rc = 0;
		goto out;
	}

	/* 2. Copy. */
	install_cancel_handlers();
	uint64_t total = 0;
	size_t nfiles = 0;
	for (size_t i = 0; i < nplan; i++)
		for (size_t u = 0; u < plan[i].nunits; u++)
			if (plan[i].units[u].action != U_PRESENT)
				for (size_t k = 0; k < plan[i].units[u].count; k++, nfiles++)
					total += plan[i].files.v[plan[i].units[u].first + k].size;
	struct progress prog;
	progress_init(&prog, "restoring", total, nfiles);
	struct totals tot = {0};
	int r = 0;
	for (size_t i = 0; r == 0 && i < nplan; i++) {
		struct plan_table *pt = &plan[i];
		for (size_t u = 0; r == 0 && u < pt->nunits; u++) {
			struct unit *un = &pt->units[u];
			if (un->action == U_PRESENT) {
				tot.present++;
				continue;
			}
			if (*un->dir) { /* index subdirectory, owned like the table directory */
				struct strbuf d = {0};
				sb_printf(&d, "%s/%s", pt->target, un->dir);
				if (mkdir(d.buf, 0755) == 0) {
					if (chown(d.buf, pt->uid, pt->gid) < 0) {
						r = -errno;
						errorf("cannot restore into %s: %s", d.buf, strerror(errno));
					}
				} else if (errno != EEXIST) {
					r = -errno;
					errorf("cannot restore into %s: %s", d.buf, strerror(errno));
				}
				sb_free(&d);
				if (r < 0)
					break;
			}
			r = restore_unit(pc, pt, un, &prog, &tot);
		}
		if (r == 0)
			tot.tables++;
	}
	progress_end(&prog);
	char size[32];
	format_bytes(tot.bytes, size, sizeof(size));
	if (r < 0) {
		if (cancel_requested)
			errorf("interrupted by signal %d", (int)cancel_requested);
		errorf("restored %zu files (%s) before stopping; every sstable is either wholly in place "
		       "or absent; run the same command again to finish", tot.files, size);
		rc = cancel_requested ? 128 + (int)cancel_requested : 1;
		goto out;
	}
	printf("restored %s: %zu tables, %zu files, %s; %zu sstables under new generations, "
	       "%zu already present\n", o.name, tot.tables, tot.files, size, tot.renamed, tot.present);

	/* 3. Tell Cassandra, or say how. */
	rc = 0;
	for (size_t i = 0; i < nplan; i++) {
		struct plan_table *pt = &plan[i];
		char *imp[] = {(char *)o.nodetool, "import", (char *)pt->t.keyspace, (char *)pt->t.table,
			       pt->target, NULL};
		char *ref[] = {(char *)o.nodetool, "refresh", (char *)pt->t.keyspace, (char *)pt->t.table, NULL};
		char cmd[2048];
		format_command(o.refresh ? ref : imp, cmd, sizeof(cmd));
		if (!o.import && !o.refresh) {
			printf("next: %s\n", cmd);
			continue;
		}
		printf("running: %s\n", cmd);
		int s = exec_run(o.refresh ? ref : imp, NULL);
		if (s != 0) {
			errorf("%s exited with status %d; the files are in place, run it again once "
			       "Cassandra is reachable", cmd, s);
			rc = 1;
		}
	}
out:
	for (size_t i = 0; plan && i < nplan; i++) {
		free(plan[i].target);
		for (size_t u = 0; u < plan[i].nunits; u++)
			free(plan[i].units[u].present_as);
		free(plan[i].units);
		vlist_free(&plan[i].files);
	}
	free(plan);
	tables_free(&ts);
	pack_cache_free(pc);
	catalog_close(cat);
out_opts:
	free(o.data_dirs);
	free(o.keyspaces);
	free(o.tables);
	free(o.table_dirs);
	return rc;
}
