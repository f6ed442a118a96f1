/* ttypass.h: a passphrase typed at the terminal, for an encrypted store opened by hand. */
#ifndef CASSBACKUP_TTYPASS_H
#define CASSBACKUP_TTYPASS_H

#include "crypt.h"
#include "util.h"

#include <stdbool.h>

/* Whether a person is there to ask: CASSBACKUP_NO_PROMPT is not set, standard input is a
 * terminal, /dev/tty opens, and this process is in its foreground (not `cmd &`). cron and
 * systemd never have a terminal; Ansible may give a pseudo-terminal (ssh -tt), which is why
 * the playbooks set CASSBACKUP_NO_PROMPT, and why a prompt gives up after a while anyway. */
bool tty_can_prompt(void);

/* How long a prompt waits for a line (seconds) before it gives up. */
#define TTY_PROMPT_SECONDS 120

/* Writes prompt to /dev/tty and reads one line from it with echo off, restored after. ^Z is
 * ignored while it asks (a shell that stopped it would turn echo back on); SIGINT, SIGTERM or
 * SIGQUIT restore the terminal, then end the process as they would have (or, ignored before,
 * return -EINTR). The line, without its newline, in locked memory (crypt_secret_free).
 * 0; -ECANCELED on end of input; -ETIMEDOUT after TTY_PROMPT_SECONDS; -EINVAL (with err) when
 * shorter than min or longer than CRYPT_KEYFILE_MAX bytes; -errno. */
int tty_read_secret(const char *prompt, size_t min, struct crypt_secret **out, struct strbuf *err);

#endif
