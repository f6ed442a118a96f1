/* cassbackup archive-commitlog: Cassandra's archive_command.
 *
 * Cassandra (CommitLogArchiver) runs archive_command once for each commitlog segment it
 * switches out, with %path and %name substituted, split on spaces, without a shell, one at a
 * time; a non-zero exit makes it keep the segment and try again later. So this command stores
 * one segment whole or not at all (commitlog.h), exits 0 only once the store has it, and
 * exits 0 again when asked to store the same bytes under the same name (a retry after a
 * failure that happened after the upload). Other bytes under a stored name are refused.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cli.h"
#include "commitlog.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The file's modification and birth times (statx; birth 0 where the file system keeps
 * none), in ms. */
static void file_times(int fd, struct commitlog_meta *m)
{
	struct statx stx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_MTIME | STATX_BTIME, &stx) < 0)
		return;
	m->mtime_ms = (int64_t)stx.stx_mtime.tv_sec * 1000 + stx.stx_mtime.tv_nsec / 1000000;
	if (stx.stx_mask & STATX_BTIME)
		m->created_ms = (int64_t)stx.stx_btime.tv_sec * 1000 + stx.stx_btime.tv_nsec / 1000000;
}

/* Reads the segment at path: *data (the caller's), *len, its times into m. One line printed on
 * failure. 0 or -errno. */
static int read_segment(const char *path, void **data, size_t *len, struct commitlog_meta *m)
{
	_cleanup_free_ char *shown = cli_escape(path);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	int r = fd < 0 || fstat(fd, &st) < 0 ? -errno : !S_ISREG(st.st_mode) ? -EINVAL : 0;
	if (r == 0 && (uint64_t)st.st_size > COMMITLOG_MAX_SIZE)
		r = -EFBIG;
	void *buf = r == 0 ? malloc(st.st_size ? (size_t)st.st_size : 1) : NULL;
	if (r == 0 && !buf)
		r = -ENOMEM;
	ssize_t n = r == 0 ? pread_full(fd, buf, (size_t)st.st_size, 0) : 0;
	if (r == 0 && n < 0)
		r = (int)n;
	if (r == 0)
		file_times(fd, m);
	if (fd >= 0)
		close(fd);
	if (r < 0) {
		errorf("cannot read commitlog segment %s: %s", shown ? shown : "",
		       r == -EINVAL ? "not a regular file" : strerror(-r));
		free(buf);
		return r;
	}
	*data = buf;
	*len = (size_t)n; /* a segment being written is not archived: what was read is it */
	return 0;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* The node's name: --node or the configuration's node, else the host name, as create names
 * the node a backup belongs to. */
static int node_name(const char *given, char out[256])
{
	if (given) {
		snprintf(out, 256, "%s", given);
		return strlen(given) < 256 ? 0 : -ENAMETOOLONG;
	}
	if (gethostname(out, 255) < 0)
		return -errno;
	out[255] = 0;
	return 0;
}

struct archive_opts {
	const char *store, *node, *host_id;
	uint64_t level;
};

static int store_segment(struct archive_opts *o, const char *path, const char *name)
{
	struct commitlog_meta m = {0};
	void *data = NULL;
	size_t len = 0;
	struct strbuf err = {0};
	struct store *s = NULL;
	_cleanup_free_ char *shown = cli_escape(name);
	int rc = CB_EXIT_FAILED, r = read_segment(path, &data, &len, &m);
	if (r < 0)
		goto out;
	if ((r = commitlog_describe(name, data, len, &m, &err)) < 0) {
		errorf("commitlog segment %s: %s", shown ? shown : "", err.buf ? err.buf : strerror(-r));
		goto out;
	}
	if (node_name(o->node, m.node) < 0 || !name_is_component(m.node) || m.node[0] == '.') {
		errorf("node name '%s': not usable as one directory name (--node)", o->node ? o->node : m.node);
		rc = CB_EXIT_USAGE;
		goto out;
	}
	snprintf(m.host_id, sizeof(m.host_id), "%s", o->host_id ? o->host_id : "");
	m.archived_ms = now_ns() / 1000000;
	if ((rc = cli_store_open(o->store, STORE_NO_CATALOG, &s)) != 0)
		goto out;
	rc = CB_EXIT_FAILED;
	r = commitlog_put(store_backend(s), &m, data, len, (int)o->level, &err);
	if (r < 0) {
		errorf("cannot store commitlog segment %s of node %s: %s", shown ? shown : "", m.node,
		       err.len ? err.buf : cb_backend_why(r));
		goto out;
	}
	printf("%s commitlog segment %s of node %s (%zu bytes)\n",
	       r == COMMITLOG_PRESENT ? "already stored:" : "stored", shown ? shown : "", m.node, len);
	rc = CB_EXIT_OK;
out:
	store_close(s);
	sb_free(&err);
	free(data);
	return rc;
}

int cmd_archive_commitlog(int argc, char **argv)
{
	struct archive_opts o = {.level = 3};
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &o.store, .arg = "STORE",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "node", .type = OPT_STRING, .value = &o.node, .arg = "NAME",
		 .help = "the node's name, as its backups name it (default: the host name)", .config_key = "node"},
		{.name = "host-id", .type = OPT_STRING, .value = &o.host_id, .arg = "UUID",
		 .help = "the node's host id, kept with the segment", .config_key = "host_id"},
		{.name = "level", .short_name = 'l', .type = OPT_U64, .value = &o.level, .arg = "N",
		 .help = "zstd level (default 3)", .min = 1, .max = 19},
		{0},
	};
	struct cli_command cmd = {
		.name = "archive-commitlog",
		.operands = "SEGMENT_PATH SEGMENT_NAME",
		.min_operands = 2,
		.max_operands = 2,
		.description = "Stores one commitlog segment: Cassandra's archive_command, in\n"
			       "commitlog_archiving.properties:\n"
			       "  archive_command=/usr/bin/cassbackup archive-commitlog --store STORE %path %name\n"
			       "Exits 0 once the store holds the segment (again 0 for the same bytes), non-zero\n"
			       "otherwise, so that Cassandra keeps it and tries again.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	const char *path = argv[first], *name = argv[first + 1];
	if (strcmp(base_name(path), name) != 0) {
		_cleanup_free_ char *p = cli_escape(path), *n = cli_escape(name);
		return cli_usage_error(&cmd, "segment %s is not named %s: give %%path %%name, in that order",
				       p ? p : "", n ? n : "");
	}
	char host_id[37];
	if (o.host_id && host_id_canonical(o.host_id, host_id) < 0) {
		_cleanup_free_ char *shown = cli_escape(o.host_id);
		return cli_usage_error(&cmd, "--host-id '%s': " HOST_ID_RULE, shown ? shown : "");
	}
	if (o.host_id)
		o.host_id = host_id;
	return store_segment(&o, path, name);
}
