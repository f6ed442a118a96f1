/* readahead.c: the mount's entry in /proc/self/mountinfo, and its readahead. */
#include "cbfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Undoes mountinfo's octal escapes (a space is \040) into out (PATH_MAX bytes). */
static void unescape_octal(const char *in, char *out)
{
	size_t j = 0;
	for (size_t i = 0; in[i] && j + 1 < PATH_MAX; i++) {
		if (in[i] == '\\' && in[i + 1] && in[i + 2] && in[i + 3]) {
			out[j++] = (char)((in[i + 1] - '0') * 64 + (in[i + 2] - '0') * 8 + (in[i + 3] - '0'));
			i += 3;
		} else {
			out[j++] = in[i];
		}
	}
	out[j] = '\0';
}

bool cbfs_is_mountpoint(const char *path, char *dev, size_t devlen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	while (getline(&line, &cap, f) > 0) {
		char mp[PATH_MAX], majmin[64], un[PATH_MAX];
		/* id parent major:minor root mountpoint ... */
		if (sscanf(line, "%*s %*s %63s %*s %4095s", majmin, mp) != 2)
			continue;
		unescape_octal(mp, un);
		if (strcmp(un, path) == 0) {
			found = true; /* the last one is on top */
			if (dev)
				snprintf(dev, devlen, "%s", majmin);
		}
	}
	free(line);
	fclose(f);
	return found;
}

void cbfs_raise_readahead(const struct cbfs *fs)
{
	if (!fs->readahead_kb)
		return;
	char dev[64], path[128], val[32];
	if (!cbfs_is_mountpoint(fs->mountpoint, dev, sizeof(dev)))
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return; /* not allowed here (not root, or sysfs read-only): keep the default */
	int n = snprintf(val, sizeof(val), "%u", fs->readahead_kb);
	if (write(fd, val, (size_t)n) < 0 && fs->foreground)
		cbfs_log(fs, "cannot raise readahead in %s: %s, ignoring", path, strerror(errno));
	close(fd);
}
