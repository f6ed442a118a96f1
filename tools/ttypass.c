/* ttypass.c: see ttypass.h. */
#include "ttypass.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

bool tty_can_prompt(void)
{
	if (!isatty(STDIN_FILENO))
		return false;
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static volatile sig_atomic_t interrupted; /* the signal that came while echo was off */

static void note_signal(int sig) { interrupted = sig; }

static const int caught[] = {SIGINT, SIGTERM, SIGQUIT};
#define NCAUGHT (sizeof(caught) / sizeof(caught[0]))

/* Reads one line from fd into s (s->len: its length); the terminal's echo is off. The caught
 * signals are blocked but while waiting (ppoll with the mask they came with): one that came
 * before the wait ends it at once instead of being lost before a blocking read. */
static int read_line(int fd, struct crypt_secret *s, size_t cap, const sigset_t *waiting_mask)
{
	size_t n = 0;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (interrupted)
			return -EINTR;
		if (ppoll(&p, 1, NULL, waiting_mask) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
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
	struct sigaction sa = {.sa_handler = note_signal}, saved[NCAUGHT];
	sigset_t block, before;
	sigemptyset(&sa.sa_mask); /* no SA_RESTART: a signal ends the read */
	sigemptyset(&block);
	for (size_t i = 0; i < NCAUGHT; i++)
		sigaddset(&block, caught[i]);
	if (r == 0) {
		interrupted = 0;
		sigprocmask(SIG_BLOCK, &block, &before);
		for (size_t i = 0; i < NCAUGHT; i++)
			sigaction(caught[i], &sa, &saved[i]);
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
		for (size_t i = 0; i < NCAUGHT; i++)
			sigaction(caught[i], &saved[i], NULL);
		sigprocmask(SIG_SETMASK, &before, NULL);
	}
	close(fd);
	if (interrupted) { /* the terminal is as it was: now end as the signal would have */
		crypt_secret_free(s);
		raise(interrupted);
		return -EINTR;
	}
	if (r == 0 && s->len < min) {
		sb_printf(err, "the passphrase typed is %zu bytes; a passphrase has at least %zu",
			  s->len, min);
		r = -EINVAL;
	} else if (r == -E2BIG) {
		sb_printf(err, "the passphrase typed is longer than %d bytes", CRYPT_KEYFILE_MAX);
		r = -EINVAL;
	} else if (r == -ECANCELED) {
		sb_puts(err, "no passphrase typed (end of input)");
	} else if (r < 0) {
		sb_printf(err, "cannot read a passphrase from the terminal: %s", strerror(-r));
	}
	if (r < 0)
		crypt_secret_free(s);
	else
		*out = s;
	return r;
}
