/* cassbackup install-timer: the configuration's schedule into systemd.
 *
 * cassbackup-backup.timer and cassbackup-backup.service (installed by meson, systemd/) carry
 * defaults; this command writes drop-ins beside them, in DIR (default /etc/systemd/system):
 *   cassbackup-backup.timer.d/cassbackup.conf    OnCalendar= from schedule,
 *                                                RandomizedDelaySec= from randomized_delay
 *   cassbackup-backup.service.d/cassbackup.conf  ExecStart= this cassbackup with this
 *                                                configuration file; OnFailure= from on_failure
 * and, when the configuration sets incremental_schedule, the same for the hourly incrementals:
 *   cassbackup-incremental.timer.d/cassbackup.conf    OnCalendar= from incremental_schedule
 *                                                     (RandomizedDelaySec= stays the unit's)
 *   cassbackup-incremental.service.d/cassbackup.conf  ExecStart= ... backup --incremental;
 *                                                     OnFailure= from on_failure
 * Without incremental_schedule nothing is written for them, and it says so.
 * A drop-in rather than a generator: the operator runs it when the configuration changes, sees
 * what it wrote, and systemd's own tools (systemctl cat, systemd-analyze verify) show it.
 * schedule, incremental_schedule and randomized_delay are checked with systemd-analyze calendar
 * / timespan first, so a value systemd would reject (with a warning in its log, leaving no
 * timer) is refused here with one line, before anything is written. */
#include "cli.h"
#include "conf.h"
#include "exec.h"
#include "metrics.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UNIT "cassbackup-backup"
#define INC_UNIT "cassbackup-incremental"
#define DEFAULT_SCHEDULE "*-*-* 01:00:00 UTC"
#define DEFAULT_DELAY "30min"

/* Does systemd-analyze KIND VALUE accept value? 0, or CB_EXIT_USAGE after one line. */
static int systemd_accepts(const char *key, const char *kind, const char *value)
{
	char *argv[] = {"systemd-analyze", (char *)kind, "--", (char *)value, NULL};
	_cleanup_free_ char *out = NULL, *err = NULL;
	char said[512] = "";
	int s = exec_capture(argv, 60, &out, &err);
	first_line(err, said, sizeof(said));
	if (s == 0)
		return 0;
	if (s == 127)
		errorf("%s = %s: cannot check it: systemd-analyze cannot be run (%s)", key, value,
		       said[0] ? said : "not found");
	else if (s < 0)
		errorf("%s = %s: cannot check it: systemd-analyze: %s", key, value, strerror(-s));
	else
		errorf("%s = %s: systemd-analyze %s refuses it%s%s", key, value, kind, said[0] ? ": " : "", said);
	return CB_EXIT_USAGE;
}

/* A value that goes into a unit file as it is: one line, no control characters. */
static bool unit_value_ok(const char *v)
{
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p < ' ' || *p == 0x7f)
			return false;
	return *v != '\0';
}

/* on_failure: unit names, as OnFailure= takes them (blank-separated). */
static bool unit_names_ok(const char *v)
{
	return unit_value_ok(v) && strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					     "0123456789:-_.\\@% ") == strlen(v);
}

/* Writes DIR/UNIT.TYPE.d/cassbackup.conf. 0, or CB_EXIT_FAILED after one line. */
static int write_dropin(const char *dir, const char *unit, const char *type, const struct strbuf *text)
{
	struct strbuf d = {0}, f = {0};
	int r = sb_printf(&d, "%s/%s.%s.d", dir, unit, type) ?: sb_printf(&f, "%s/cassbackup.conf", d.buf);
	if (r == 0 && mkdir(d.buf, 0755) < 0 && errno != EEXIST)
		r = -errno;
	r = r ?: replace_file(f.buf, text->buf, text->len, 0644);
	if (r < 0)
		errorf("cannot write %s: %s", f.buf ? f.buf : dir, strerror(-r));
	else
		printf("wrote %s\n", f.buf);
	sb_free(&d);
	sb_free(&f);
	return r < 0 ? CB_EXIT_FAILED : 0;
}

/* The absolute path of the configuration file read (NULL: none) into buf; "" when none. */
static int config_abs(char *buf, size_t n)
{
	buf[0] = '\0';
	const char *c = config_path();
	if (!c)
		return 0;
	char real[PATH_MAX];
	if (!realpath(c, real))
		return -errno;
	snprintf(buf, n, "%s", real);
	return 0;
}

/* arg as one word of a unit's ExecStart= (systemd.service(5), "Command lines"): in double
 * quotes, with \\ and \" escaped, % as %% (a specifier otherwise) and $ as $$ (a variable
 * otherwise). -EINVAL for a control character, which no unit line can hold. */
static int exec_word(struct strbuf *out, const char *arg)
{
	int r = sb_puts(out, "\"");
	for (const char *p = arg; r == 0 && *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return -EINVAL;
		const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '%' ? "%%" : *p == '$' ? "$$" : NULL;
		r = esc ? sb_puts(out, esc) : sb_append(out, p, 1);
	}
	return r ?: sb_puts(out, "\"");
}

/* ExecStart=SELF [--config CONF] ARGS, each path one quoted word. -EINVAL (a path with a control
 * character) or -ENOMEM. */
static int exec_start_line(struct strbuf *out, const char *self, const char *conf, const char *args)
{
	int r = sb_puts(out, "ExecStart=\nExecStart=") ?: exec_word(out, self);
	if (r == 0 && *conf)
		r = sb_puts(out, " --config ") ?: exec_word(out, conf);
	return r ?: sb_printf(out, " %s\n", args);
}

/* The drop-ins of unit (.timer and .service): OnCalendar=schedule, RandomizedDelaySec=delay
 * (NULL: the unit's), OnFailure=on_failure (NULL: none), ExecStart= this cassbackup with this
 * configuration file and args. 0, or the exit code after one line. */
static int dropins(const char *dir, const char *unit, const char *args, const char *schedule,
		   const char *delay, const char *on_failure)
{
	char self[PATH_MAX], conf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0 || config_abs(conf, sizeof(conf)) < 0) {
		errorf("cannot tell where %s is: %s", n < 0 ? "cassbackup" : "the configuration", strerror(errno));
		return CB_EXIT_FAILED;
	}
	self[n] = '\0';
	const char *src = conf[0] ? conf : "no configuration file";
	struct strbuf timer = {0}, service = {0};
	int r = sb_printf(&timer, "# Written by 'cassbackup install-timer' from %s: change that and run it "
			  "again.\n[Timer]\nOnCalendar=\nOnCalendar=%s\n", src, schedule);
	if (r == 0 && delay)
		r = sb_printf(&timer, "RandomizedDelaySec=%s\n", delay);
	r = r ?: sb_printf(&service, "# Written by 'cassbackup install-timer' from %s: change that and run "
			   "it again.\n", src);
	if (r == 0 && on_failure)
		r = sb_printf(&service, "[Unit]\nOnFailure=%s\n", on_failure);
	r = r ?: sb_puts(&service, "[Service]\n") ?: exec_start_line(&service, self, conf, args);
	int rc = 0;
	if (r == -EINVAL)
		rc = (errorf("%s: a control character in its path, which a unit file cannot hold; "
			     "nothing was written", conf[0] ? conf : self), CB_EXIT_USAGE);
	else if (r < 0)
		rc = (errorf("out of memory"), CB_EXIT_FAILED);
	rc = rc ?: write_dropin(dir, unit, "timer", &timer);
	rc = rc ?: write_dropin(dir, unit, "service", &service);
	sb_free(&timer);
	sb_free(&service);
	return rc;
}

int cmd_install_timer(int argc, char **argv)
{
	const char *dir = "/etc/systemd/system";
	struct cli_option opts[] = {
		{.name = "unit-dir", .type = OPT_STRING, .value = &dir, .arg = "DIR",
		 .help = "where the drop-in directories go (default /etc/systemd/system)"},
		{0},
	};
	struct cli_command cmd = {
		.name = "install-timer",
		.description =
			"Writes the configuration's schedule (default " DEFAULT_SCHEDULE ") and\n"
			"randomized_delay (default " DEFAULT_DELAY ") into a drop-in of\n"
			UNIT ".timer, and into one of " UNIT ".service the\n"
			"command it runs (this cassbackup, 'backup', with this configuration file) and\n"
			"on_failure (OnFailure= units). Both values are checked with systemd-analyze\n"
			"first. Then run: systemctl daemon-reload; systemctl enable --now " UNIT ".timer\n"
			"With incremental_schedule set, the same for " INC_UNIT ".timer and .service\n"
			"('backup --incremental'; the unit's RandomizedDelaySec=); without it nothing is\n"
			"written for them.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	const char *schedule = config_get("schedule") ?: DEFAULT_SCHEDULE;
	const char *delay = config_get("randomized_delay") ?: DEFAULT_DELAY;
	const char *on_failure = config_get("on_failure");
	const char *inc_schedule = config_get("incremental_schedule");
	if (!unit_value_ok(schedule) || !unit_value_ok(delay) || (inc_schedule && !unit_value_ok(inc_schedule))) {
		errorf("%s: empty or holds control characters", !unit_value_ok(schedule) ? "schedule"
		       : !unit_value_ok(delay) ? "randomized_delay" : "incremental_schedule");
		return CB_EXIT_USAGE;
	}
	if (on_failure && !unit_names_ok(on_failure)) {
		errorf("on_failure = %s: expected unit names (letters, digits, : - _ . \\ @ %%)", on_failure);
		return CB_EXIT_USAGE;
	}
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		errorf("--unit-dir %s: %s", dir, S_ISDIR(st.st_mode) || errno != 0 ? strerror(errno)
		       : "not a directory");
		return CB_EXIT_USAGE;
	}
	rc = systemd_accepts("schedule", "calendar", schedule);
	rc = rc ?: systemd_accepts("randomized_delay", "timespan", delay);
	if (inc_schedule)
		rc = rc ?: systemd_accepts("incremental_schedule", "calendar", inc_schedule);
	rc = rc ?: dropins(dir, UNIT, "backup", schedule, delay, on_failure);
	if (inc_schedule)
		rc = rc ?: dropins(dir, INC_UNIT, "backup --incremental", inc_schedule, NULL, on_failure);
	if (rc != 0)
		return rc;
	if (inc_schedule) {
		printf("now run: systemctl daemon-reload && systemctl enable --now " UNIT ".timer " INC_UNIT
		       ".timer\n");
	} else {
		printf("incremental_schedule is not set: nothing written for " INC_UNIT ".timer; do not "
		       "enable it (systemctl disable --now " INC_UNIT ".timer if it is)\n");
		printf("now run: systemctl daemon-reload && systemctl enable --now " UNIT ".timer\n");
	}
	return 0;
}
