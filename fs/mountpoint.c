/* mountpoint.c: where a mount may go (cbfs.h cbfs_check_mountpoint). */
#include "cbfs.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Does directory dfd hold anything but "." and ".."? */
static int holds_entries(int dfd)
{
	int fd = dup(dfd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	struct dirent *e;
	bool any = false;
	while (!any && (e = readdir(d)))
		any = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return any;
}

/* Is dir (absolute) a Cassandra table directory (<table>-<32 hex>, as Cassandra 2.1 and later
 * name them), or a data directory (it holds the system_schema keyspace)? */
static bool cassandra_dir(const char *dir)
{
	const char *base = strrchr(dir, '/');
	base = base ? base + 1 : dir;
	if (is_table_dir_name(base))
		return true;
	struct strbuf p = {0};
	struct stat st;
	bool data_dir = sb_printf(&p, "%s/system_schema", dir) == 0 && stat(p.buf, &st) == 0 &&
			S_ISDIR(st.st_mode);
	sb_free(&p);
	return data_dir;
}

/* The first of path and its ancestors that is a Cassandra directory, into out; false when
 * none is. */
static bool inside_cassandra(const char *path, char *out, size_t outlen)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s", path);
	for (;;) {
		if (cassandra_dir(p)) {
			snprintf(out, outlen, "%s", p);
			return true;
		}
		char *slash = strrchr(p, '/');
		if (!slash || slash == p)
			return false;
		*slash = '\0';
	}
}

int cbfs_check_mountpoint(const char *path, bool nonempty, struct strbuf *why)
{
	char found[PATH_MAX];
	if (inside_cassandra(path, found, sizeof(found))) {
		sb_printf(why, "inside the Cassandra directory %s: a backup mounted there would be "
			  "taken for live data; mount it elsewhere", found);
		return -EINVAL;
	}
	if (cbfs_is_mountpoint(path, NULL, 0)) {
		sb_printf(why, "busy: something is already mounted there (fusermount3 -u %s)", path);
		return -EBUSY;
	}
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = dfd < 0 ? -errno : holds_entries(dfd);
	if (dfd >= 0)
		close(dfd);
	if (r < 0) {
		sb_printf(why, "%s", strerror(-r));
		return r;
	}
	if (r > 0 && !nonempty) {
		sb_printf(why, "not empty: the mount would hide what it holds (-o nonempty to mount "
			  "over it all the same)");
		return -ENOTEMPTY;
	}
	return 0;
}
