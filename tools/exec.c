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
	if (o->log_path && child_redirect(o->log_path) < 0)
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

void strv_free(struct strv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	*a = (struct strv){0};
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
