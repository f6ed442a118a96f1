/* nodemeta.c: see nodemeta.h. */
#include "nodemeta.h"
#include "exec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define CONF_FILE_MAX (16u << 20)
#define CQLSH_OUT_MAX (64u << 20)

const char *cqlsh_option_problem(const char *opt)
{
	if (!strcmp(opt, "-p") || !strncmp(opt, "--password", 10) ||
	    (!strncmp(opt, "-p", 2) && opt[2]))
		return "a password on cqlsh's command line is visible to every user (ps); put it in a "
		       "cqlshrc file ([authentication] password) and pass --cqlshrc=FILE";
	return NULL;
}

/* The whole of memfd fd (written by a child), NUL-terminated, into *out. */
static int read_memfd(int fd, size_t max, char **out)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size > max)
		return -EFBIG;
	char *buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	ssize_t n = pread_full(fd, buf, (size_t)st.st_size, 0);
	if (n < 0) {
		free(buf);
		return (int)n;
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
}

/* The last line of text that is not blank, into why. */
static void last_error_line(const char *text, struct strbuf *why)
{
	const char *end = text + strlen(text);
	while (end > text && (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\r'))
		end--;
	const char *start = end;
	while (start > text && start[-1] != '\n')
		start--;
	sb_printf(why, "%.*s", (int)(end - start > 300 ? 300 : end - start), start);
}

int cqlsh_run(const struct cqlsh_conf *c, const char *statement, const char *file, char **out,
	      struct strbuf *why)
{
	*out = NULL;
	struct strv a = {0};
	int r = strv_push(&a, c->program ? c->program : "cqlsh");
	if (r == 0 && c->host)
		r = strv_push(&a, c->host);
	for (size_t i = 0; r == 0 && c->options && i < c->options->n; i++)
		r = strv_push(&a, c->options->v[i]);
	r = r ?: strv_push(&a, file ? "-f" : "-e") ?: strv_push(&a, file ? file : statement);
	int fds[2] = {memfd_create("cqlsh-out", MFD_CLOEXEC), memfd_create("cqlsh-err", MFD_CLOEXEC)};
	if (r == 0 && (fds[0] < 0 || fds[1] < 0))
		r = -errno;
	pid_t pid = 0;
	if (r == 0 && (pid = exec_spawn(a.v, &(struct exec_opts){.own_group = true, .capture = fds})) < 0)
		r = (int)pid;
	int status = 0;
	while (r == 0 && waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			r = -errno;
	char *err = NULL;
	if (r == 0 && (r = read_memfd(fds[1], 1 << 20, &err)) == 0)
		r = read_memfd(fds[0], CQLSH_OUT_MAX, out);
	if (r == 0 && (status = exec_status(status)) != 0) {
		char cmd[256];
		format_command(a.v, cmd, sizeof(cmd));
		if (status == 127) /* exec_spawn's child said why on its stderr */
			sb_printf(why, "%s could not be run: ", a.v[0]);
		else
			sb_printf(why, "%s failed (exit status %d): ", cmd, status);
		last_error_line(*err ? err : *out ? *out : "", why);
		free(*out);
		*out = NULL;
		r = status;
	} else if (r < 0) {
		sb_printf(why, "cannot run %s: %s", a.v[0] ? a.v[0] : "cqlsh", strerror(-r));
	}
	if (why->len && why->buf[why->len - 1] == '\n')
		why->buf[--why->len] = '\0';
	free(err);
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	strv_free(&a);
	return r;
}

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct nodemeta_file *)a)->name, ((const struct nodemeta_file *)b)->name);
}

/* Reads entry name of directory dfd when it is a regular file of at most CONF_FILE_MAX. 1 and
 * f filled, 0 when left out (said in skipped), or -errno. */
static int read_entry(int dfd, const char *dir, const char *name, struct nodemeta_file *f,
		      struct strbuf *skipped)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return errno == ENXIO || errno == ELOOP ? 0 : -errno;
	int r = fstat(fd, &f->st) < 0 ? -errno : 0;
	if (r == 0 && !S_ISREG(f->st.st_mode)) {
		if (S_ISDIR(f->st.st_mode))
			sb_printf(skipped, "%s%s/%s/", skipped->len ? ", " : "", dir, name);
		r = 1;
	} else if (r == 0 && (uint64_t)f->st.st_size > CONF_FILE_MAX) {
		sb_printf(skipped, "%s%s/%s (over 16 MiB)", skipped->len ? ", " : "", dir, name);
		r = 1;
	}
	if (r != 0) {
		close(fd);
		return r == 1 ? 0 : r;
	}
	f->data = malloc((size_t)f->st.st_size + 1);
	ssize_t n = f->data ? pread_full(fd, f->data, (size_t)f->st.st_size + 1, 0) : -ENOMEM;
	close(fd);
	if (n >= 0 && (uint64_t)n != (uint64_t)f->st.st_size)
		n = -ESTALE; /* changed while read: the next backup takes it */
	if (n < 0 || !(f->name = strdup(name))) {
		free(f->data);
		f->data = NULL;
		return n < 0 ? (int)n : -ENOMEM;
	}
	f->size = (size_t)n;
	return 1;
}

int nodemeta_read_conf(const char *dir, struct nodemeta_conf *out, struct strbuf *skipped,
		       struct strbuf *why)
{
	*out = (struct nodemeta_conf){0};
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		int e = errno;
		if (dfd >= 0)
			close(dfd);
		sb_printf(why, "%s: %s", dir, strerror(e));
		return -e;
	}
	int r = 0;
	struct dirent *de;
	while (r == 0 && (errno = 0, de = readdir(d))) {
		if (de->d_name[0] == '.' && (!de->d_name[1] || !strcmp(de->d_name, "..")))
			continue;
		struct nodemeta_file *v = realloc(out->files, (out->n + 1) * sizeof(*v));
		if (!v) {
			r = -ENOMEM;
			break;
		}
		out->files = v;
		v[out->n] = (struct nodemeta_file){0};
		int k = read_entry(dirfd(d), dir, de->d_name, &v[out->n], skipped);
		if (k < 0) {
			sb_printf(why, "%s/%s: %s", dir, de->d_name, strerror(-k));
			r = k;
		}
		out->n += k == 1;
	}
	if (r == 0 && errno) {
		r = -errno;
		sb_printf(why, "%s: %s", dir, strerror(-r));
	}
	closedir(d);
	if (r < 0) {
		nodemeta_conf_free(out);
		return r;
	}
	if (out->n)
		qsort(out->files, out->n, sizeof(*out->files), cmp_file);
	return 0;
}

void nodemeta_conf_free(struct nodemeta_conf *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->files[i].name);
		free(c->files[i].data);
	}
	free(c->files);
	*c = (struct nodemeta_conf){0};
}
