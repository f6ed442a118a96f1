/* exec.c: see exec.h. */
#include "exec.h"
#include "conf.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* In the child: signals as a freshly started program expects them. Handlers would be reset by
 * execve anyway, but SIG_IGN and the mask are inherited, and a signal arriving between fork and
 * execve must not run our handler in the child. */
static void child_reset_signals(void)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD};
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		signal(sigs[i], SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* In the child: stdout and stderr to the log, stdin from /dev/null. Both opened O_CLOEXEC: only
 * the dup2'd descriptors 0, 1 and 2 reach the program. */
static int child_redirect(const char *log_path)
{
	int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
		return -1;
	int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (nul < 0 || dup2(nul, STDIN_FILENO) < 0)
		return -1;
	return 0;
}

/* In the child: stdout and stderr to fds[0] and fds[1] (opened O_CLOEXEC: dup2 makes copies
 * that are not), stdin from /dev/null. */
static int child_capture(const int fds[2])
{
	for (int i = 0; i < 2; i++) {
		int to = i ? STDERR_FILENO : STDOUT_FILENO;
		if (fds[i] == to ? fcntl(to, F_SETFD, 0) < 0 : dup2(fds[i], to) < 0)
			return -1;
	}
	int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (nul < 0 || dup2(nul, STDIN_FILENO) < 0)
		return -1;
	return 0;
}

pid_t exec_spawn(char *const argv[], const struct exec_opts *o)
{
	pid_t parent = getpid();
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		return pid;
	if (o->own_group)
		setpgid(0, 0);
	if (o->parent_death_signal) {
		prctl(PR_SET_PDEATHSIG, o->parent_death_signal);
		if (getppid() != parent) /* we died before prctl took effect */
			_exit(127);
	}
	if (o->capture ? child_capture(o->capture) < 0 : o->log_path && child_redirect(o->log_path) < 0)
		_exit(127);
	child_reset_signals();
	execvp(argv[0], argv);
	fprintf(stderr, "cassbackup: cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

pid_t exec_start(char *const argv[], const char *log_path)
{
	return exec_spawn(argv, &(struct exec_opts){.log_path = log_path});
}

static int check_executable(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || access(path, X_OK) < 0)
		return -EACCES;
	return 0;
}

int exec_find(const char *prog, char *out, size_t n)
{
	if (!prog || !*prog)
		return -ENOENT;
	if (strchr(prog, '/')) {
		snprintf(out, n, "%s", prog);
		int r = check_executable(prog);
		return r == -ENOTDIR ? -ENOENT : r;
	}
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	int found_unusable = 0;
	for (const char *p = path; ; ) {
		const char *end = strchrnul(p, ':');
		int len = (int)(end - p);
		snprintf(out, n, "%.*s%s%s", len, p, len ? "/" : "", prog);
		int r = check_executable(out);
		if (r == 0)
			return 0;
		if (r == -EACCES)
			found_unusable = r;
		if (!*end)
			break;
		p = end + 1;
	}
	snprintf(out, n, "%s", prog);
	return found_unusable ? found_unusable : -ENOENT;
}

int exec_status(int ws)
{
	if (WIFEXITED(ws))
		return WEXITSTATUS(ws);
	if (WIFSIGNALED(ws))
		return 128 + WTERMSIG(ws);
	return 1;
}

int exec_run(char *const argv[], const char *log_path)
{
	pid_t pid = exec_start(argv, log_path);
	if (pid < 0)
		return pid;
	int ws;
	while (waitpid(pid, &ws, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return exec_status(ws);
}

#define CAPTURE_MAX (64u << 10)

/* One output being captured: what was kept, how much may be, whether more came. */
struct capture {
	struct strbuf sb;
	size_t max;
	bool over;
};

/* Reads what fd has into c (up to c->max, the rest dropped and c->over set). 1 at end of
 * file, 0 when more may come, -errno. */
static int capture_read(int fd, struct capture *c)
{
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -errno;
	if (n == 0)
		return 1;
	size_t keep = c->sb.len >= c->max ? 0 : c->max - c->sb.len;
	c->over |= (size_t)n > keep;
	int r = sb_append(&c->sb, buf, (size_t)n < keep ? (size_t)n : keep);
	return r < 0 ? r : 0;
}

/* Reads fds[0] and fds[1] to their ends, or until deadline (monotonic seconds; 0: none).
 * 0, -ETIMEDOUT or -errno. */
static int capture_all(const int fds[2], double deadline, struct capture c[2])
{
	bool open_[2] = {true, true};
	while (open_[0] || open_[1]) {
		struct pollfd p[2];
		nfds_t np = 0;
		int which[2];
		for (int i = 0; i < 2; i++)
			if (open_[i]) {
				p[np] = (struct pollfd){.fd = fds[i], .events = POLLIN};
				which[np++] = i;
			}
		int ms = -1;
		if (deadline > 0) {
			double left = deadline - mono_seconds();
			if (left <= 0)
				return -ETIMEDOUT;
			ms = (int)(left * 1000) + 1;
		}
		int n = poll(p, np, ms);
		if (n < 0 && errno != EINTR)
			return -errno;
		for (nfds_t k = 0; n > 0 && k < np; k++) {
			if (!p[k].revents)
				continue;
			int r = capture_read(p[k].fd, &c[which[k]]);
			if (r < 0)
				return r;
			if (r > 0)
				open_[which[k]] = false;
		}
	}
	return 0;
}

/* The text of sb as a malloc'd string into *to (NULL when to is NULL or it is empty). */
static int capture_take(struct strbuf *sb, char **to)
{
	if (!to)
		return 0;
	*to = NULL;
	if (!sb->len)
		return 0;
	if (!(*to = strndup(sb->buf, sb->len)))
		return -ENOMEM;
	return 0;
}

/* Waits for pid until deadline (monotonic seconds; 0: none): 0 with its status in *ws,
 * -ETIMEDOUT (still running) or -errno. */
static int wait_until(pid_t pid, double deadline, int *ws)
{
	for (;;) {
		pid_t w = waitpid(pid, ws, deadline > 0 ? WNOHANG : 0);
		if (w == pid)
			return 0;
		if (w < 0 && errno != EINTR)
			return -errno;
		if (w == 0 && mono_seconds() >= deadline)
			return -ETIMEDOUT;
		if (w == 0)
			usleep(10000);
	}
}

/* exec_capture with max_out bytes of stdout kept; strict: more is -EFBIG. */
static int capture(char *const argv[], unsigned timeout_s, size_t max_out, bool strict, char **out,
		   char **err)
{
	if (out)
		*out = NULL;
	if (err)
		*err = NULL;
	int po[2] = {-1, -1}, pe[2] = {-1, -1};
	if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
		int e = errno;
		close(po[0]), close(po[1]);
		return -e;
	}
	double deadline = timeout_s ? mono_seconds() + timeout_s : 0;
	pid_t pid = exec_spawn(argv, &(struct exec_opts){.own_group = true, .parent_death_signal = SIGTERM,
						     .capture = (int[]){po[1], pe[1]}});
	close(po[1]);
	close(pe[1]);
	struct capture c[2] = {{.max = max_out}, {.max = CAPTURE_MAX}};
	int r = pid < 0 ? pid : capture_all((int[]){po[0], pe[0]}, deadline, c);
	close(po[0]);
	close(pe[0]);
	int ws = 0;
	if (pid > 0 && r == 0)
		r = wait_until(pid, deadline, &ws);
	if (pid > 0 && (r == -ETIMEDOUT || (r < 0 && r != -ECHILD))) {
		/* out of time, or its output could not be read: it does not go on unwatched */
		kill(-pid, SIGKILL);
		while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
			;
	}
	if (r == 0 && strict && c[0].over)
		r = -EFBIG;
	if (r == 0)
		r = capture_take(&c[0].sb, out) ?: capture_take(&c[1].sb, err) ?: exec_status(ws);
	sb_free(&c[0].sb);
	sb_free(&c[1].sb);
	return r;
}

int exec_capture(char *const argv[], unsigned timeout_s, char **out, char **err)
{
	return capture(argv, timeout_s, CAPTURE_MAX, false, out, err);
}

int exec_capture_whole(char *const argv[], unsigned timeout_s, size_t max_out, char **out, char **err)
{
	return capture(argv, timeout_s, max_out, true, out, err);
}

void first_line(const char *text, char *buf, size_t n)
{
	buf[0] = '\0';
	for (const char *p = text; p && *p; p += strcspn(p, "\n"), p += *p == '\n') {
		size_t len = strcspn(p, "\r\n");
		if (len && strspn(p, " \t") < len) {
			snprintf(buf, n, "%.*s", (int)len, p);
			return;
		}
	}
}

void last_line(const char *path, char *buf, size_t n)
{
	buf[0] = '\0';
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		size_t len = strcspn(line, "\r\n");
		line[len] = '\0';
		if (len && strspn(line, " \t") != len)
			snprintf(buf, n, "%s", line);
	}
	fclose(f);
}

void format_command(char *const argv[], char *buf, size_t n)
{
	struct strbuf sb = {0};
	for (int i = 0; argv[i]; i++) {
		const char *a = argv[i];
		bool plain = *a && strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					     "0123456789-_./:=,@+") == strlen(a);
		sb_printf(&sb, i ? " " : "");
		if (plain) {
			sb_puts(&sb, a);
		} else {
			sb_puts(&sb, "'");
			for (; *a; a++)
				sb_puts(&sb, *a == '\'' ? "'\\''" : (char[]){*a, 0});
			sb_puts(&sb, "'");
		}
	}
	snprintf(buf, n, "%s", sb.buf ? sb.buf : "");
	sb_free(&sb);
}

int strv_push(struct strv *a, const char *s)
{
	char **v = realloc(a->v, (a->n + 2) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	a->v = v;
	if (!(v[a->n] = strdup(s)))
		return -ENOMEM;
	v[++a->n] = NULL;
	return 0;
}

int strv_append(struct strv *a, const struct strv *more)
{
	int r = 0;
	for (size_t i = 0; r == 0 && i < more->n; i++)
		r = strv_push(a, more->v[i]);
	return r;
}

void strv_free(struct strv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	*a = (struct strv){0};
}

/* sstableloader's options (tools/LoaderOptions.java getCmdLineOptions, Cassandra 4.0 to 5.0),
 * but for those load sets itself. */
static const struct loader_option {
	const char *name, *short_name;
	bool value;
} loader_options[] = {
	{"verbose", "v", false}, {"no-progress", NULL, false}, {"ignore", "i", true},
	{"port", "p", true}, {"storage-port", "sp", true}, {"ssl-storage-port", "ssp", true},
	{"inter-dc-throttle", "idct", true}, {"entire-sstable-throttle", "e", true},
	{"entire-sstable-inter-dc-throttle", "eidct", true}, {"auth-provider", "ap", true},
	{"connections-per-host", "cph", true}, {"truststore", "ts", true},
	{"truststore-password", "tspw", true}, {"keystore", "ks", true},
	{"keystore-password", "kspw", true}, {"ssl-protocol", "prtcl", true},
	{"ssl-alg", "alg", true}, {"store-type", "st", true}, {"ssl-ciphers", "ciphers", true},
	{"conf-path", "f", true},
};
static const char *const loader_options_of_load[] = {
	"nodes", "d", "throttle", "t", "username", "u", "password", "pw", "target-keyspace", "k",
};

int sstableloader_option(struct strv *a, const char *spec, struct strbuf *err)
{
	const char *name = spec + strspn(spec, "-"), *eq = strchr(name, '=');
	size_t n = eq ? (size_t)(eq - name) : strlen(name);
	for (size_t i = 0; i < ARRAY_SIZE(loader_options_of_load); i++)
		if (strlen(loader_options_of_load[i]) == n && !strncmp(name, loader_options_of_load[i], n)) {
			sb_printf(err, "%s: load sets this option itself (--hosts, --throttle, "
				  "sstableloader_user, --target-keyspace)", spec);
			return -EINVAL;
		}
	for (size_t i = 0; i < ARRAY_SIZE(loader_options); i++) {
		const struct loader_option *o = &loader_options[i];
		if (!(strlen(o->name) == n && !strncmp(name, o->name, n)) &&
		    !(o->short_name && strlen(o->short_name) == n && !strncmp(name, o->short_name, n)))
			continue;
		if (o->value != (eq != NULL) || (eq && !eq[1])) {
			sb_printf(err, "%s: sstableloader's --%s %s", spec, o->name,
				  o->value ? "takes a value (NAME=VALUE)" : "takes no value");
			return -EINVAL;
		}
		struct strbuf flag = {0};
		int r = sb_printf(&flag, "--%s", o->name) ?: strv_push(a, flag.buf) ?:
			(eq ? strv_push(a, eq + 1) : 0);
		sb_free(&flag);
		return r;
	}
	sb_printf(err, "%s: not an option of sstableloader (e.g. conf-path=FILE, port=N, "
		  "ssl-storage-port=N, truststore=FILE)", spec);
	return -EINVAL;
}

int nodetool_argv(struct strv *a, const char *nodetool)
{
	const char *prog = nodetool ? nodetool : config_get("nodetool");
	const char *user = config_get("nodetool_user"), *pwf = config_get("nodetool_password_file");
	int r = strv_push(a, prog ? prog : "nodetool");
	if (r == 0 && user)
		r = strv_push(a, "-u") ?: strv_push(a, user);
	if (r == 0 && pwf)
		r = strv_push(a, "-pwf") ?: strv_push(a, pwf);
	return r;
}

bool host_list_ok(const char *hosts)
{
	if (!hosts || !*hosts || *hosts == ',')
		return false;
	for (const unsigned char *p = (const unsigned char *)hosts; *p; p++) {
		if (*p <= ' ' || *p >= 0x7f || (*p == ',' && (p[1] == ',' || p[1] == '\0')))
			return false;
	}
	return true;
}

int sstableloader_argv(struct strv *a, const char *loader, const char *hosts, const char *throttle,
		       const char *user, const char *password)
{
	int r = strv_push(a, loader) ?: strv_push(a, "-d") ?: strv_push(a, hosts);
	if (r == 0 && throttle)
		r = strv_push(a, "-t") ?: strv_push(a, throttle);
	if (r == 0 && user && password)
		r = strv_push(a, "-u") ?: strv_push(a, user) ?: strv_push(a, "-pw") ?: strv_push(a, password);
	return r;
}
