/* retention.c: see retention.h. */
#include "retention.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_PER_S 1000000000LL

enum { RULE_LAST, RULE_HOURLY, RULE_DAILY, RULE_WEEKLY, RULE_MONTHLY, RULE_YEARLY, RULE_COUNT };

bool retention_policy_empty(const struct retention_policy *p)
{
	const struct retention_span *w = &p->within;
	return !p->last && !p->hourly && !p->daily && !p->weekly && !p->monthly && !p->yearly &&
	       !w->years && !w->months && !w->days && !w->seconds;
}

/* The calendar period of t for a rule, as one comparable number (restic's "bucket"). */
static long long period_of(int rule, int64_t t_ns, size_t nr)
{
	time_t t = (time_t)(t_ns / NS_PER_S - (t_ns % NS_PER_S < 0));
	struct tm tm;
	localtime_r(&t, &tm);
	long long y = tm.tm_year + 1900LL, m = tm.tm_mon + 1, d = tm.tm_mday;
	switch (rule) {
	case RULE_HOURLY: return ((y * 100 + m) * 100 + d) * 100 + tm.tm_hour;
	case RULE_DAILY: return (y * 100 + m) * 100 + d;
	case RULE_WEEKLY: {
		char iso[16]; /* ISO 8601 week-based year and week */
		strftime(iso, sizeof(iso), "%G%V", &tm);
		return atoll(iso);
	}
	case RULE_MONTHLY: return y * 100 + m;
	case RULE_YEARLY: return y;
	default: return (long long)nr; /* last: every backup is its own period */
	}
}

/* newest - span, in calendar terms (local time), as restic's AddDate(...).Add(-hours). */
static int64_t span_start(int64_t newest_ns, const struct retention_span *w)
{
	int64_t sub_ns = newest_ns % NS_PER_S;
	if (sub_ns < 0)
		sub_ns += NS_PER_S;
	time_t t = (time_t)((newest_ns - sub_ns) / NS_PER_S);
	struct tm tm;
	localtime_r(&t, &tm);
	tm.tm_year -= w->years;
	tm.tm_mon -= w->months;
	tm.tm_mday -= w->days;
	tm.tm_isdst = -1;
	time_t start = mktime(&tm);
	return ((int64_t)start - w->seconds) * NS_PER_S + sub_ns;
}

struct order {
	int64_t t;
	size_t i;
};

static int newest_first(const void *a, const void *b)
{
	const struct order *x = a, *y = b;
	if (x->t != y->t)
		return x->t > y->t ? -1 : 1;
	/* among equal times (backups of one snapshot) the one made later, later in the input */
	return x->i > y->i ? -1 : x->i < y->i;
}

/* Keeps what each kept incremental follows, up its chain. */
static void keep_bases(struct retention_item *items, size_t n)
{
	bool changed = true;
	while (changed) {
		changed = false;
		for (size_t i = 0; i < n; i++) {
			if (!items[i].reasons || !items[i].previous)
				continue;
			for (size_t k = 0; k < n; k++)
				if (!items[k].reasons && items[k].name &&
				    !strcmp(items[k].name, items[i].previous)) {
					items[k].reasons = RETAIN_BASE;
					changed = true;
				}
		}
	}
}

/* The index of the backup item i follows, or n (a full one, or its base is not among them). */
static size_t base_of(const struct retention_item *items, size_t n, size_t i)
{
	for (size_t k = 0; items[i].previous && k < n; k++)
		if (k != i && items[k].name && !strcmp(items[k].name, items[i].previous))
			return k;
	return n;
}

/* When each backup is taken to hold its data as of: an incremental holds what was flushed
 * after the backup it follows, so it counts as newer than that backup, whatever the node's
 * clock said when it was made. (A clock stepped back dated an incremental before its base:
 * --keep-last 1 kept the base and forgot the newest data, and prune deleted it.) t[i] is at
 * least 1 ns past its base's t, unless that is after now_ns: a base dated in the future (kept
 * as such) does not make all that follows it future too; n passes at most, so a chain that
 * loops ends. */
static void chain_times(const struct retention_item *items, size_t n, int64_t now_ns, size_t *base,
			int64_t *t)
{
	for (size_t i = 0; i < n; i++) {
		base[i] = base_of(items, n, i);
		t[i] = items[i].time_ns;
	}
	bool changed = true;
	for (size_t pass = 0; changed && pass < n; pass++) {
		changed = false;
		for (size_t i = 0; i < n; i++)
			if (base[i] < n && t[base[i]] < now_ns && t[i] <= t[base[i]]) {
				t[i] = t[base[i]] + 1;
				changed = true;
			}
	}
}

int retention_apply(struct retention_item *items, size_t n, const struct retention_policy *p,
		    int64_t now_ns)
{
	if (n == 0)
		return 0;
	struct order *o = malloc(n * sizeof(*o));
	size_t *base = malloc(n * sizeof(*base));
	int64_t *t = malloc(n * sizeof(*t));
	if (!o || !base || !t) {
		free(o);
		free(base);
		free(t);
		return -ENOMEM;
	}
	chain_times(items, n, now_ns, base, t);
	for (size_t i = 0; i < n; i++)
		o[i] = (struct order){t[i], i};
	free(base);
	free(t);
	qsort(o, n, sizeof(*o), newest_first);

	int count[RULE_COUNT] = {p->last, p->hourly, p->daily, p->weekly, p->monthly, p->yearly};
	long long last_period[RULE_COUNT];
	bool seen[RULE_COUNT] = {false};

	bool have_newest = false;
	int64_t newest = 0;
	for (size_t k = 0; k < n; k++)
		if (o[k].t <= now_ns && (!have_newest || o[k].t > newest)) {
			newest = o[k].t;
			have_newest = true;
		}
	bool within = p->within.years || p->within.months || p->within.days || p->within.seconds;
	int64_t within_start = have_newest && within ? span_start(newest, &p->within) : INT64_MIN;

	for (size_t k = 0; k < n; k++) {
		struct retention_item *it = &items[o[k].i];
		it->reasons = 0;
		if (o[k].t > now_ns) {
			it->reasons = RETAIN_FUTURE;
			continue;
		}
		if (within && o[k].t > within_start)
			it->reasons |= RETAIN_WITHIN;
		for (int r = 0; r < RULE_COUNT; r++) {
			if (count[r] == 0)
				continue;
			long long period = period_of(r, o[k].t, k);
			if (seen[r] && period == last_period[r] && k != n - 1)
				continue;
			seen[r] = true;
			last_period[r] = period;
			if (count[r] > 0)
				count[r]--;
			it->reasons |= RETAIN_LAST << r;
		}
	}
	free(o);
	keep_bases(items, n);
	return 0;
}

const char *retention_reason_name(enum retention_reason r)
{
	switch (r) {
	case RETAIN_LAST: return "last";
	case RETAIN_HOURLY: return "hourly";
	case RETAIN_DAILY: return "daily";
	case RETAIN_WEEKLY: return "weekly";
	case RETAIN_MONTHLY: return "monthly";
	case RETAIN_YEARLY: return "yearly";
	case RETAIN_WITHIN: return "within";
	case RETAIN_FUTURE: return "future";
	case RETAIN_BASE: return "base";
	}
	return "?";
}
