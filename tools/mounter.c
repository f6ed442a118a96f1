/* mounter.c: see mounter.h. */
#include "mounter.h"
#include "cli.h"
#include "store.h"
#include "conf.h"
#include "config.h"
#include "exec.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MOUNT_WAIT_SECONDS 15

int mounter_find_helper(char *out, size_t n)
{
	const char *env = getenv("CASSBACKUP_MOUNT_HELPER"), *conf = config_get("mount_helper");
	char installed[PATH_MAX];
	snprintf(installed, sizeof(installed), "%s/mount.cassbackup", SBINDIR);
	return exec_find(env && *env ? env : conf && *conf ? conf : installed, out, n);
}

static void reap(pid_t pid, int *ws)
{
	while (waitpid(pid, ws, 0) < 0 && errno == EINTR)
		;
}

bool mounter_exited(struct mounter *m)
{
	if (m->pid <= 0)
		return false;
	int ws;
	if (waitpid(m->pid, &ws, WNOHANG) != m->pid)
		return false;
	m->pid = 0;
	return true;
}

void mounter_stop(struct mounter *m)
{
	if (!m->dir.path)
		return;
	char *u[] = {"fusermount3", "-u", m->dir.path, NULL};
	char *lazy[] = {"fusermount3", "-u", "-z", m->dir.path, NULL};
	/* A helper that exited on its own may leave a dead mount: always unmount. When neither
	 * unmount works (not mounted yet, no fusermount3), SIGTERM: libfuse unmounts as the helper
	 * exits. */
	bool unmounted = exec_run(u, "/dev/null") == 0 || exec_run(lazy, "/dev/null") == 0;
	if (m->pid > 0) {
		if (!unmounted)
			kill(m->pid, SIGTERM);
		int ws;
		reap(m->pid, &ws);
		m->pid = 0;
	}
	tmpdir_remove(&m->dir);
}

/* Why the helper exited before mounting: its last line of output, else its exit status. */
static void exit_reason(const char *log_path, int ws, char *why, size_t whylen)
{
	char line[512];
	last_line(log_path, line, sizeof(line));
	if (line[0])
		snprintf(why, whylen, "%s", line);
	else
		snprintf(why, whylen, "mount helper exited with status %d", exec_status(ws));
}

/* Polls until dir is a different filesystem than it was (mounted), the helper exits, *cancel,
 * or the deadline. 0 or -errno as mounter_start. */
static int wait_mounted(struct mounter *m, dev_t before, const char *log_path,
			const volatile sig_atomic_t *cancel, char *why, size_t whylen)
{
	double deadline = mono_seconds() + MOUNT_WAIT_SECONDS;
	for (;;) {
		struct stat st;
		if (stat(m->dir.path, &st) == 0 && st.st_dev != before)
			return 0;
		int ws;
		if (waitpid(m->pid, &ws, WNOHANG) == m->pid) {
			m->pid = 0;
			exit_reason(log_path, ws, why, whylen);
			return -EIO;
		}
		if (cancel && *cancel) {
			snprintf(why, whylen, "interrupted");
			return -EINTR;
		}
		if (mono_seconds() > deadline) {
			snprintf(why, whylen, "not mounted after %d s (see %s)", MOUNT_WAIT_SECONDS, log_path);
			return -ETIMEDOUT;
		}
		usleep(20000);
	}
}

/* ",NAME=ABSOLUTE-PATH" for the mount's -o list (the daemon leaves its directory): -EINVAL
 * for a path with a comma, which would split the list. */
static int add_key_option(struct strbuf *o, const char *name, const char *file, char *why,
			  size_t whylen)
{
	if (!file)
		return 0;
	char *abs = realpath(file, NULL);
	if (!abs || strchr(abs, ',')) {
		int e = abs ? EINVAL : errno;
		snprintf(why, whylen, "%s %s: %s", name, file, abs ? "a path with a comma cannot be "
			 "handed to the mount" : strerror(e));
		free(abs);
		return -e;
	}
	int r = sb_printf(o, "%s%s=%s", o->len ? "," : "", name, abs);
	free(abs);
	return r;
}

int mounter_start(struct mounter *m, const char *store, const char *tag, const char *log_path,
		  const volatile sig_atomic_t *cancel, char *why, size_t whylen)
{
	*m = (struct mounter){0};
	int r = mounter_find_helper(m->helper, sizeof(m->helper));
	if (r < 0) {
		snprintf(why, whylen, "cannot run %s: %s", m->helper, strerror(-r));
		return r;
	}
	struct stat st;
	if ((r = tmpdir_make(tag, &m->dir)) < 0 || (fstat(m->dir.fd, &st) < 0 && (r = -errno))) {
		snprintf(why, whylen, "cannot make a mount point in %s: %s", tmpdir_root(), strerror(-r));
		tmpdir_remove(&m->dir);
		return r;
	}
	/* the configuration this command read (--config), and the key it opened an encrypted store
	 * with, so the mount reaches the store alike */
	struct strbuf conf = {0};
	const char *path = config_path();
	const struct store_options *so = cli_store_settings();
	r = path ? sb_printf(&conf, "config=%s", path) : 0;
	r = r ?: add_key_option(&conf, "key_file", so->key_file, why, whylen);
	r = r ?: add_key_option(&conf, "passphrase_file", so->passphrase_file, why, whylen);
	if (r < 0) {
		if (r == -ENOMEM)
			snprintf(why, whylen, "out of memory");
		sb_free(&conf);
		tmpdir_remove(&m->dir);
		return r;
	}
	char *argv[] = {m->helper, (char *)store, m->dir.path, "-f", conf.len ? "-o" : NULL, conf.buf, NULL};
	struct exec_opts eo = {.log_path = log_path, .own_group = true, .parent_death_signal = SIGTERM};
	m->pid = exec_spawn(argv, &eo);
	sb_free(&conf);
	if (m->pid < 0) {
		r = m->pid;
		m->pid = 0;
		snprintf(why, whylen, "cannot start %s: %s", m->helper, strerror(-r));
	} else {
		r = wait_mounted(m, st.st_dev, log_path, cancel, why, whylen);
	}
	if (r < 0)
		mounter_stop(m);
	return r;
}
