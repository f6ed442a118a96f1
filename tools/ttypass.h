/* ttypass.h: a passphrase typed at the terminal, for an encrypted store opened by hand. */
#ifndef CASSBACKUP_TTYPASS_H
#define CASSBACKUP_TTYPASS_H

#include "crypt.h"
#include "util.h"

#include <stdbool.h>

/* Whether a person is there to ask: standard input is a terminal and /dev/tty opens. A run
 * from cron, systemd, ssh without -t or Ansible never is, so it never waits on a prompt. */
bool tty_can_prompt(void);

/* Writes prompt to /dev/tty and reads one line from it with echo off (restored after, also
 * when interrupted: SIGINT, SIGTERM or SIGQUIT restore the terminal, then end the process as
 * they would have). The line, without its newline, in locked memory (crypt_secret_free).
 * 0; -ECANCELED on end of input; -EINVAL (with err) when shorter than min or longer than
 * CRYPT_KEYFILE_MAX bytes; -errno. */
int tty_read_secret(const char *prompt, size_t min, struct crypt_secret **out, struct strbuf *err);

#endif
