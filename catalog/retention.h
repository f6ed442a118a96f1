/* retention.h: which backups a forget policy keeps, with restic's semantics.
 *
 * The caller groups backups (cassbackup groups by node) and calls retention_apply once per
 * group. Within a group:
 *   - backups are taken newest first (ties keep their input order);
 *   - each counted rule (last, hourly, daily, weekly, monthly, yearly) keeps the newest backup of
 *     each calendar period (local time; weeks are ISO 8601 weeks, so 2026-12-31 may belong to
 *     week 2026-W53 and 2027-01-01 to it too) until its count is used up;
 *   - a counted rule that still has count left when the oldest backup is reached keeps that one
 *     too (restic >= 0.14: it maximises the history kept);
 *   - rules are ORed and counted independently: a backup kept by one rule still uses up the
 *     count of every other rule whose period it starts;
 *   - `within` keeps every backup newer than (newest backup - span), the span subtracted in
 *     calendar terms (years, months, days in local time, then hours), measured from the newest
 *     backup that is not in the future, so an idle node's last backups are never all dropped;
 *   - a backup dated after `now` is always kept ("dated in the future") and neither uses up a
 *     count nor moves the newest point: a clock that ran ahead must not cost real backups.
 *     restic has no such rule; cassbackup adds it because forgetting is irreversible.
 *   - an incremental backup kept keeps the backups it follows (its previous, up to its full
 *     base: reason "base"), so a kept incremental never loses its base or the incrementals
 *     between; these neither use up a count nor move the newest point.
 */
#ifndef CASSBACKUP_RETENTION_H
#define CASSBACKUP_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A calendar span as restic's --keep-within takes it ("2y5m7d3h"): years, months and days
 * step back on the calendar, then seconds (hours, minutes and seconds) on the clock. */
struct retention_span {
	int years, months, days;
	int64_t seconds;
};

/* Counts: 0 leaves a rule out, -1 keeps every period ("unlimited"). */
struct retention_policy {
	int last, hourly, daily, weekly, monthly, yearly;
	struct retention_span within; /* all zero: no within rule */
};

/* Why a backup is kept: a bit for each rule that kept it. */
enum retention_reason {
	RETAIN_LAST = 1 << 0,
	RETAIN_HOURLY = 1 << 1,
	RETAIN_DAILY = 1 << 2,
	RETAIN_WEEKLY = 1 << 3,
	RETAIN_MONTHLY = 1 << 4,
	RETAIN_YEARLY = 1 << 5,
	RETAIN_WITHIN = 1 << 6,
	RETAIN_FUTURE = 1 << 7,
	RETAIN_BASE = 1 << 8, /* followed by a kept incremental */
};
#define RETAIN_REASON_COUNT 9

struct retention_item {
	int64_t time_ns;  /* in: when the backup holds its data as of (manifest_time_ns); an
			   * incremental counts as no older than what it follows */
	const char *name, *previous; /* in: its name; the backup it follows (NULL: a full one) */
	unsigned reasons; /* out: enum retention_reason bits; 0 means remove */
};

/* True when the policy has no rule at all (forget refuses that rather than keep everything). */
bool retention_policy_empty(const struct retention_policy *p);

/* Sets items[i].reasons for the n backups of one group (in the order they were made, oldest
 * first: among equal times the one made later counts as the newer), per the rules above. Local time is
 * taken from TZ as localtime_r does. now_ns: the present, for the future-dated rule.
 * 0, or -ENOMEM. */
int retention_apply(struct retention_item *items, size_t n, const struct retention_policy *p,
		    int64_t now_ns);

/* The name of one reason bit ("last", "hourly", ..., "within", "future"). */
const char *retention_reason_name(enum retention_reason r);

#endif
