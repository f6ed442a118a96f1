/* ttypass.c: see ttypass.h. */
#include "ttypass.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

bool tty_can_prompt(void)
{
	const char *no = getenv("CASSBACKUP_NO_PROMPT");
	if ((no && *no) || !isatty(STDIN_FILENO))
		return false;
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool foreground = tcgetpgrp(fd) == getpgrp();
	close(fd);
	return foreground;
}

static volatile sig_atomic_t interrupted; /* the signal that came while echo was off */

static void note_signal(int sig) { interrupted = sig; }

static const int caught[] = {SIGINT, SIGTERM, SIGQUIT};
#define NCAUGHT (sizeof(caught) / sizeof(caught[0]))
static const int stopping[] = {SIGTSTP, SIGTTIN, SIGTTOU};
#define NSTOPPING (sizeof(stopping) / sizeof(stopping[0]))

/* The seconds a prompt waits: TTY_PROMPT_SECONDS (a build for the tests, -Dtest_hooks=true,
 * takes a shorter wait from CASSBACKUP_TEST_PROMPT_SECONDS). */
static int prompt_seconds(void)
{
#ifdef CASSBACKUP_TEST_HOOKS
	const char *s = getenv("CASSBACKUP_TEST_PROMPT_SECONDS");
	int n = s ? atoi(s) : 0;
	return n > 0 ? n : TTY_PROMPT_SECONDS;
#else
	return TTY_PROMPT_SECONDS;
#endif
}

/* Reads one line from fd into s (s->len: its length); the terminal's echo is off. The caught
 * signals are blocked but while waiting (ppoll with the mask they came with): one that came
 * before the wait ends it at once instead of being lost before a blocking read. */
static int read_line(int fd, struct crypt_secret *s, size_t cap, const sigset_t *waiting_mask)
{
	size_t n = 0;
	struct timespec now, end;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += prompt_seconds();
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (interrupted)
			return -EINTR;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
			return -ETIMEDOUT;
		struct timespec left = {end.tv_sec - now.tv_sec, end.tv_nsec - now.tv_nsec};
		if (left.tv_nsec < 0) {
			left.tv_sec--;
			left.tv_nsec += 1000000000L;
		}
		int ready = ppoll(&p, 1, &left, waiting_mask);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready < 0)
			return -errno;
		if (ready == 0)
			continue; /* the deadline, checked above */
		char c;
		ssize_t got = read(fd, &c, 1);
		if (got < 0 && errno == EINTR && !interrupted)
			continue;
		if (got < 0)
			return interrupted ? -EINTR : -errno;
		if (got == 0)
			return n ? 0 : -ECANCELED;
		if (c == '\n' || c == '\r')
			break;
		if (n == cap)
			return -E2BIG;
		s->p[n++] = (unsigned char)c;
	}
	s->len = n;
	return 0;
}

/* Ends the process by sig, as it would have ended had the prompt not caught it; returns only
 * when sig was ignored before the prompt. */
static void end_by(int sig, const struct sigaction *before)
{
	if (before->sa_handler == SIG_IGN)
		return;
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, sig);
	signal(sig, SIG_DFL);
	raise(sig);
	sigprocmask(SIG_UNBLOCK, &one, NULL); /* it was blocked: delivered here */
}

int tty_read_secret(const char *prompt, size_t min, struct crypt_secret **out, struct strbuf *err)
{
	*out = NULL;
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		sb_printf(err, "cannot open the terminal (/dev/tty): %s", strerror(e));
		return -e;
	}
	struct crypt_secret *s = crypt_secret_new(CRYPT_KEYFILE_MAX);
	struct termios old, quiet;
	int r = s ? 0 : -ENOMEM;
	if (r == 0 && tcgetattr(fd, &old) < 0)
		r = -errno;
	struct sigaction sa = {.sa_handler = note_signal}, ign = {.sa_handler = SIG_IGN};
	struct sigaction saved[NCAUGHT], saved_stop[NSTOPPING];
	sigset_t block, before;
	sigemptyset(&sa.sa_mask); /* no SA_RESTART: a signal ends the wait */
	sigemptyset(&ign.sa_mask);
	sigemptyset(&block);
	for (size_t i = 0; i < NCAUGHT; i++)
		sigaddset(&block, caught[i]);
	int sig = 0;
	if (r == 0) {
		interrupted = 0;
		sigprocmask(SIG_BLOCK, &block, &before);
		for (size_t i = 0; i < NCAUGHT; i++)
			sigaction(caught[i], &sa, &saved[i]);
		for (size_t i = 0; i < NSTOPPING; i++)
			sigaction(stopping[i], &ign, &saved_stop[i]);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
		quiet.c_lflag |= ICANON;
		if (tcsetattr(fd, TCSAFLUSH, &quiet) < 0)
			r = -errno;
		if (r == 0 && write(fd, prompt, strlen(prompt)) < 0)
			r = -errno;
		if (r == 0)
			r = read_line(fd, s, CRYPT_KEYFILE_MAX, &before);
		tcsetattr(fd, TCSAFLUSH, &old);
		if (write(fd, "\n", 1) < 0) { /* the newline echo did not show */
		}
		sig = interrupted;
		for (size_t i = 0; i < NSTOPPING; i++)
			sigaction(stopping[i], &saved_stop[i], NULL);
		for (size_t i = 0; i < NCAUGHT; i++) {
			if (caught[i] == sig)
				end_by(sig, &saved[i]); /* the terminal is as it was */
			sigaction(caught[i], &saved[i], NULL);
		}
		sigprocmask(SIG_SETMASK, &before, NULL);
	}
	close(fd);
	if (r == 0 && s->len < min) {
		sb_printf(err, "the passphrase typed is %zu bytes; a passphrase has at least %zu",
			  s->len, min);
		r = -EINVAL;
	} else if (r == -E2BIG) {
		sb_printf(err, "the passphrase typed is longer than %d bytes", CRYPT_KEYFILE_MAX);
		r = -EINVAL;
	} else if (r == -ECANCELED) {
		sb_puts(err, "no passphrase typed (end of input)");
	} else if (r == -ETIMEDOUT) {
		sb_printf(err, "no passphrase typed in %d s", prompt_seconds());
	} else if (r < 0) {
		sb_printf(err, "cannot read a passphrase from the terminal: %s", strerror(-r));
	}
	if (r < 0)
		crypt_secret_free(s);
	else
		*out = s;
	return r;
}
