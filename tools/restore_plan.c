/* restore_plan.c: see restore_plan.h. */
#include "restore_plan.h"
#include "sstable.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum unit_action plan_decide(bool is_sstable, bool taken, bool same_here, bool same_elsewhere)
{
	if (taken && same_here)
		return U_PRESENT;
	if (is_sstable && same_elsewhere)
		return U_PRESENT;
	if (!taken)
		return U_COPY;
	return is_sstable ? U_RENAME : U_CONFLICT;
}

static int vf_cmp(const void *a, const void *b)
{
	const struct vf *x = a, *y = b;
	int c = strcmp(x->dir, y->dir);
	return c ? c : strcmp(x->name, y->name);
}

/* Do files a and b belong to the same sstable? */
static bool same_sstable(const struct vf *a, const struct vf *b)
{
	size_t pl = sstable_prefix_len(a->name);
	return pl && !strcmp(a->dir, b->dir) && sstable_prefix_len(b->name) == pl &&
	       !strncmp(a->name, b->name, pl);
}

int plan_group_units(struct vlist *files, struct unit **units, size_t *nunits)
{
	*units = NULL;
	*nunits = 0;
	if (files->n > 1)
		qsort(files->v, files->n, sizeof(files->v[0]), vf_cmp);
	size_t cap = 0;
	for (size_t i = 0; i < files->n;) {
		size_t j = i + 1;
		while (j < files->n && same_sstable(&files->v[i], &files->v[j]))
			j++;
		if (*nunits == cap) {
			size_t ncap = cap ? 2 * cap : 16;
			struct unit *u = realloc(*units, ncap * sizeof(*u));
			if (!u) {
				plan_units_free(*units, *nunits);
				*units = NULL;
				*nunits = 0;
				return -ENOMEM;
			}
			*units = u;
			cap = ncap;
		}
		(*units)[(*nunits)++] = (struct unit){.dir = files->v[i].dir, .first = i, .count = j - i};
		i = j;
	}
	return 0;
}

void plan_units_free(struct unit *units, size_t nunits)
{
	for (size_t i = 0; units && i < nunits; i++)
	{
		free(units[i].present_as);
		free(units[i].present_in);
	}
	free(units);
}

int gen_alloc_next(struct gen_alloc *ga, const char *dir,
		   uint64_t (*in_use)(void *ctx, const char *dir), void *ctx, uint64_t *gen)
{
	struct gen_dir *d = NULL;
	for (size_t i = 0; i < ga->n && !d; i++)
		if (!strcmp(ga->v[i].dir, dir))
			d = &ga->v[i];
	if (!d) {
		struct gen_dir *v = realloc(ga->v, (ga->n + 1) * sizeof(*v));
		if (!v)
			return -ENOMEM;
		ga->v = v;
		char *copy = strdup(dir);
		if (!copy)
			return -ENOMEM;
		uint64_t used = in_use(ctx, dir);
		if (used == UINT64_MAX) {
			free(copy);
			return -EOVERFLOW;
		}
		d = &ga->v[ga->n++];
		*d = (struct gen_dir){.dir = copy, .next = used + 1};
	}
	if (d->next == UINT64_MAX)
		return -EOVERFLOW;
	*gen = d->next++;
	return 0;
}

void gen_alloc_free(struct gen_alloc *ga)
{
	for (size_t i = 0; i < ga->n; i++)
		free(ga->v[i].dir);
	free(ga->v);
	*ga = (struct gen_alloc){0};
}

uint64_t plan_max_generation(const struct vlist *files, const char *dir)
{
	uint64_t m = 0;
	for (size_t k = 0; k < files->n; k++) {
		uint64_t g = sstable_numeric_generation(files->v[k].name);
		if (!strcmp(files->v[k].dir, dir) && g > m)
			m = g;
	}
	return m;
}

void name_for_msg(const char *s, struct strbuf *out)
{
	out->len = 0;
	sb_puts(out, "");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f || c == '\\')
			sb_printf(out, "\\x%02x", c);
		else
			sb_append(out, s, 1);
	}
}

static int bad_name(struct strbuf *why, const char *what, const char *name)
{
	struct strbuf shown = {0};
	name_for_msg(name, &shown);
	sb_printf(why, "%s '%s' is not a single path component", what, shown.buf ? shown.buf : "");
	sb_free(&shown);
	return -EINVAL;
}

int plan_check_names(const char *keyspace, const char *table, const struct vlist *files,
		     struct strbuf *why)
{
	if (!name_is_component(keyspace))
		return bad_name(why, "keyspace", keyspace);
	if (!name_is_component(table))
		return bad_name(why, "table", table);
	for (size_t i = 0; i < files->n; i++) {
		const struct vf *f = &files->v[i];
		if (*f->dir && (!name_is_component(f->dir) || f->dir[0] != '.'))
			return bad_name(why, "index directory", f->dir);
		if (!name_is_component(f->name))
			return bad_name(why, "file", f->name);
	}
	return 0;
}

static bool is_hex32(const char *s)
{
	return strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32;
}

bool plan_table_dir_matches(const char *entry, const char *table)
{
	size_t tl = strlen(table);
	return !strcmp(entry, table) || (!strncmp(entry, table, tl) && entry[tl] == '-' && is_hex32(entry + tl + 1));
}

bool plan_is_table_dir_name(const char *entry)
{
	const char *dash = strrchr(entry, '-');
	return dash && dash > entry && is_hex32(dash + 1);
}

bool plan_restore_temp_pid(const char *name, pid_t *pid)
{
	size_t pl = strlen(RESTORE_TEMP_PREFIX);
	if (strncmp(name, RESTORE_TEMP_PREFIX, pl) != 0)
		return false;
	const char *p = name + pl;
	size_t n = strspn(p, "0123456789");
	if (n == 0 || n > 9 || p[n] != '-')
		return false;
	*pid = (pid_t)strtol(p, NULL, 10);
	return *pid > 0;
}

bool plan_import_stage_pid(const char *name, pid_t *pid)
{
	size_t pl = strlen(IMPORT_STAGE_PREFIX);
	if (strncmp(name, IMPORT_STAGE_PREFIX, pl) != 0)
		return false;
	const char *p = name + pl;
	size_t n = strspn(p, "0123456789");
	if (n == 0 || n > 9 || p[n] != '\0')
		return false;
	*pid = (pid_t)strtol(p, NULL, 10);
	return *pid > 0;
}

/* Does the directory ks (open as fd) hold a <table>-<32 hex> directory? Takes fd. */
static bool holds_table_dir(int fd)
{
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return false;
	}
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		struct stat st;
		found = plan_is_table_dir_name(e->d_name) && fstatat(dirfd(d), e->d_name, &st, 0) == 0 &&
			S_ISDIR(st.st_mode);
	}
	closedir(d);
	return found;
}

int plan_check_data_dir(const char *path, struct strbuf *why)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		sb_printf(why, "%s", e == ENOTDIR ? "not a directory" : strerror(e));
		return e == ENOTDIR ? -ENOTDIR : -e;
	}
	DIR *d = fdopendir(fd);
	if (!d) {
		int e = errno;
		close(fd);
		sb_printf(why, "%s", strerror(e));
		return -e;
	}
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int kfd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		found = kfd >= 0 && holds_table_dir(kfd);
	}
	closedir(d);
	if (!found) {
		sb_printf(why, "not a Cassandra data directory (no <keyspace>/<table>-<id> directories in it)");
		return -EINVAL;
	}
	return 0;
}
