/* nodemeta.c: see nodemeta.h. */
#include "nodemeta.h"
#include "exec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONF_FILE_MAX (16u << 20)
#define CQLSH_OUT_MAX (64u << 20)
/* cqlsh gives up on a node by itself (--connect-timeout 5 s, --request-timeout 10 s by
 * default); this bounds a cqlsh that hangs anyway (a DESCRIBE of a huge schema takes seconds) */
#define CQLSH_TIMEOUT 600
#define CQLSH_TIMEOUT_TEXT "600 s"

const char *cqlsh_option_problem(const char *opt)
{
	if (!strcmp(opt, "-p") || !strncmp(opt, "--password", 10) ||
	    (!strncmp(opt, "-p", 2) && opt[2]))
		return "a password on cqlsh's command line is visible to every user (ps); put it in a "
		       "cqlshrc file ([authentication] password) and pass --cqlshrc=FILE";
	return NULL;
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
	char *err = NULL, cmd[256];
	if (r == 0)
		r = exec_capture_whole(a.v, CQLSH_TIMEOUT, CQLSH_OUT_MAX, out, &err);
	if (r == 0 && !*out && !(*out = strdup("")))
		r = -ENOMEM;
	if (r > 0) {
		format_command(a.v, cmd, sizeof(cmd));
		struct strbuf said = {0};
		last_error_line(err ? err : *out ? *out : "", &said);
		const char *reason = said.buf ? said.buf : "";
		if (r == 127 && strrchr(reason, ':')) /* exec_spawn's child: "...: strerror" */
			reason = strrchr(reason, ':') + 1 + (strrchr(reason, ':')[1] == ' ');
		if (r == 127)
			sb_printf(why, "%s could not be run: %s", a.v[0], reason);
		else
			sb_printf(why, "%s failed (exit status %d): %s", cmd, r, reason);
		sb_free(&said);
	} else if (r < 0) {
		sb_printf(why, "cannot run %s: %s", a.v[0] ? a.v[0] : "cqlsh",
			  r == -ETIMEDOUT ? "it did not finish within " CQLSH_TIMEOUT_TEXT
			  : r == -EFBIG ? "it printed over 64 MiB" : strerror(-r));
	}
	if (r != 0) {
		free(*out);
		*out = NULL;
	}
	free(err);
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
