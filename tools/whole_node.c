/* whole_node.c: the checks and the cassandra.yaml settings of restore --whole-node. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "whole_node.h"

#include "cassandra_conf.h"
#include "exec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define YAML_MAX (UINT64_C(16) << 20) /* a cassandra.yaml is tens of KiB */
#define NODETOOL_TIMEOUT_S 60

int whole_node_check_backup(const struct tables *ts, struct strbuf *why)
{
	for (size_t i = 0; i < ts->n; i++)
		if (!strcmp(ts->v[i].keyspace, WHOLE_NODE_SCHEMA_KEYSPACE))
			return 0;
	int r = sb_printf(why, "it holds no %s keyspace (made without --include-system, or the "
			  "data directories it was made of had none), and a node cannot start without "
			  "its schema", WHOLE_NODE_SCHEMA_KEYSPACE);
	return r < 0 ? r : -EINVAL;
}

int whole_node_table_dir(const char *table, const char *id, struct strbuf *out)
{
	return *id ? sb_printf(out, "%s-%s", table, id) : sb_puts(out, table);
}

/* Whether ks is a keyspace of ts, and (table_dir != NULL) whether table_dir is the directory
 * one of its tables goes to. */
static bool backup_has(const struct tables *ts, const char *ks, const char *table_dir)
{
	for (size_t i = 0; i < ts->n; i++) {
		if (strcmp(ts->v[i].keyspace, ks))
			continue;
		if (!table_dir)
			return true;
		struct strbuf d = {0};
		bool same = whole_node_table_dir(ts->v[i].table, ts->v[i].table_id, &d) == 0 &&
			    !strcmp(d.buf, table_dir);
		sb_free(&d);
		if (same)
			return true;
	}
	return false;
}

/* The first entry of keyspace directory ks (under dfd) that no table of the backup goes to,
 * into why. 0 when there is none, else -ENOTEMPTY (or -errno). */
static int check_keyspace_dir(int dfd, const char *path, const char *ks, const struct tables *ts,
			      struct strbuf *why)
{
	int fd = openat(dfd, ks, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		sb_printf(why, "%s/%s: %s", path, ks, e == ENOTDIR || e == ELOOP ? "not a directory" : strerror(e));
		return -e;
	}
	int r = 0;
	struct dirent *e;
	while (r == 0 && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !backup_has(ts, ks, e->d_name)) {
			sb_printf(why, "it holds %s/%s/%s, which is not a table of this backup", path, ks, e->d_name);
			r = -ENOTEMPTY;
		}
	closedir(d);
	return r;
}

int whole_node_check_data_dir(const char *path, const struct tables *ts, struct strbuf *why)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		sb_printf(why, "%s", e == ENOTDIR ? "not a directory" : strerror(e));
		return -e;
	}
	int r = 0;
	struct dirent *e;
	while (r == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "lost+found"))
			continue;
		if (!backup_has(ts, e->d_name, NULL)) {
			sb_printf(why, "it holds %s, which is not a keyspace of this backup", e->d_name);
			r = -ENOTEMPTY;
		} else {
			r = check_keyspace_dir(dirfd(d), path, e->d_name, ts, why);
		}
	}
	closedir(d);
	return r;
}

int whole_node_cassandra_answers(const char *nodetool, struct strbuf *why)
{
	struct strv a = {0};
	int r = nodetool_argv(&a, nodetool) ?: strv_push(&a, "version");
	char path[4096];
	if (r < 0 || exec_find(a.v[0], path, sizeof(path)) < 0) {
		strv_free(&a);
		return r; /* no nodetool: no Cassandra installed here to answer */
	}
	char *out = NULL;
	int st = exec_capture(a.v, NODETOOL_TIMEOUT_S, &out, NULL);
	strv_free(&a);
	if (st == 0) {
		_cleanup_free_ char *v = out ? nodetool_parse_version(out) : NULL;
		sb_printf(why, "nodetool version answered%s%s", v ? ": ReleaseVersion " : "", v ? v : "");
	}
	free(out);
	return st == -ENOMEM ? -ENOMEM : st == 0;
}

int whole_node_default_owner(uid_t *uid, gid_t *gid)
{
	struct passwd *pw = getpwnam("cassandra");
	if (!pw)
		return -ENOENT;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

int whole_node_yaml_lines(const char *tokens, struct strbuf *out)
{
	struct strv t = {0};
	struct strbuf err = {0};
	int r = tokens_parse_list(tokens, &t, &err);
	sb_free(&err);
	/* Cassandra refuses to start when num_tokens is not the number of initial_token's
	 * (DatabaseDescriptor.applyTokensConfig, 3.11 on), or is not set while they are several */
	r = r ?: sb_printf(out, "num_tokens: %zu\ninitial_token: ", t.n);
	for (size_t i = 0; r == 0 && i < t.n; i++)
		r = sb_printf(out, "%s%s", i ? "," : "", t.v[i]);
	r = r ?: sb_puts(out, "\nauto_bootstrap: false\n");
	strv_free(&t);
	return r;
}

/* Whether line (up to its end) sets top-level key: "key:" at the start of the line. */
static bool line_sets(const char *line, const char *key)
{
	size_t n = strlen(key);
	return !strncmp(line, key, n) && line[n] == ':';
}

#define YAML_SET_MAX 4 /* lines whole_node_yaml_lines makes */

/* yaml with the top-level lines of each key set sets ("key: value" lines, as
 * whole_node_yaml_lines makes them) replaced by set's line (its first; later ones dropped),
 * or set's line appended where the key was absent. */
static int yaml_with(const char *yaml, const char *set, struct strbuf *out)
{
	char keys[YAML_SET_MAX][32];
	const char *set_line[YAML_SET_MAX];
	bool done[YAML_SET_MAX] = {false};
	int n = 0;
	for (const char *s = set; *s && n < YAML_SET_MAX; s += strcspn(s, "\n") + 1, n++) {
		snprintf(keys[n], sizeof(keys[n]), "%.*s", (int)strcspn(s, ":"), s);
		set_line[n] = s;
	}
	int r = 0;
	for (const char *p = yaml; r == 0 && *p;) {
		size_t len = strcspn(p, "\n");
		bool replaced = false;
		for (int k = 0; k < n && !replaced; k++)
			if (line_sets(p, keys[k])) {
				if (!done[k])
					r = sb_append(out, set_line[k], strcspn(set_line[k], "\n") + 1);
				done[k] = replaced = true;
			}
		if (!replaced)
			r = sb_append(out, p, len) ?: sb_puts(out, "\n");
		p += len + (p[len] == '\n');
	}
	for (int k = 0; r == 0 && k < n; k++)
		if (!done[k])
			r = sb_append(out, set_line[k], strcspn(set_line[k], "\n") + 1);
	return r;
}

/* Writes data to a new file in path's directory with st's mode and owner, fsyncs it and
 * renames it over path. 0 or -errno. */
static int replace_file(const char *path, const struct strbuf *data, const struct stat *st)
{
	struct strbuf tmp = {0};
	int r = sb_printf(&tmp, "%s.cassbackup-XXXXXX", path);
	int fd = r < 0 ? -1 : mkostemp(tmp.buf, O_CLOEXEC);
	if (fd < 0) {
		r = r < 0 ? r : -errno;
		sb_free(&tmp);
		return r;
	}
	r = write_full(fd, data->buf, data->len);
	if (r == 0 && (fchmod(fd, st->st_mode & 07777) < 0 || fchown(fd, st->st_uid, st->st_gid) < 0 ||
		       fsync(fd) < 0))
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp.buf, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp.buf);
	_cleanup_free_ char *dir = strdup(path);
	if (r == 0 && dir)
		r = fsync_dir(dirname(dir));
	sb_free(&tmp);
	return r;
}

/* Keeps the file as it was at <path>.before-cassbackup, unless a copy is there already. */
static int keep_original(const char *path, const char *text, size_t len, const struct stat *st)
{
	struct strbuf orig = {0};
	int r = sb_printf(&orig, "%s.before-cassbackup", path);
	if (r == 0 && access(orig.buf, F_OK) < 0)
		r = replace_file(orig.buf, &(struct strbuf){.buf = (char *)text, .len = len}, st);
	sb_free(&orig);
	return r;
}

int whole_node_set_tokens(const char *path, const char *tokens, struct strbuf *err)
{
	char *text = NULL;
	size_t len = 0;
	struct stat st;
	struct strbuf set = {0}, out = {0};
	int r = read_small_file(path, YAML_MAX, &text, &len);
	if (r == 0 && stat(path, &st) < 0)
		r = -errno;
	if (r < 0) {
		sb_printf(err, "%s: %s", path, strerror(-r));
		goto out;
	}
	if (memchr(text, '\0', len)) {
		sb_printf(err, "%s: not a YAML file (it holds NUL bytes)", path);
		r = -EINVAL;
		goto out;
	}
	if ((r = whole_node_yaml_lines(tokens, &set)) < 0) {
		sb_printf(err, "the backup recorded no tokens to set in %s", path);
		goto out;
	}
	r = yaml_with(text, set.buf, &out) ?: keep_original(path, text, len, &st) ?:
	    replace_file(path, &out, &st);
	if (r < 0)
		sb_printf(err, "cannot write %s: %s", path, strerror(-r));
out:
	free(text);
	sb_free(&set);
	sb_free(&out);
	return r;
}
