/* Unit tests of the forget policy (catalog/retention.c), table-driven.
 *
 * Each case gives a time zone, "now", the backups newest first (local time, or UTC with a
 * trailing Z), a policy, and the expected verdict per backup: K kept, R removed. The expected
 * verdicts were worked out by hand from restic's rules (internal/restic/snapshot_policy.go) and
 * the calendar; the comments say why where it is not obvious. */
#include "retention.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

#define UTC "UTC0"
#define BERLIN "CET-1CEST,M3.5.0,M10.5.0/3"

struct tcase {
	const char *name;
	const char *tz;
	const char *now;
	struct retention_policy p;
	const char *times[10];
	const char *expect;
	unsigned first_reasons; /* when non-zero: the reasons of the first backup */
};

static const struct tcase cases[] = {
	{"last 3 of 5", UTC, "2030-06-01 00:00", {.last = 3},
	 {"2030-01-05 00:00", "2030-01-04 00:00", "2030-01-03 00:00", "2030-01-02 00:00",
	  "2030-01-01 00:00"}, "KKKRR", RETAIN_LAST},
	{"last keeps everything when count exceeds", UTC, "2030-06-01 00:00", {.last = 10},
	 {"2030-01-02 00:00", "2030-01-01 00:00"}, "KK", 0},
	{"daily 2: newest of each day", UTC, "2030-06-01 00:00", {.daily = 2},
	 {"2030-01-03 18:00", "2030-01-03 06:00", "2030-01-02 18:00", "2030-01-02 06:00",
	  "2030-01-01 18:00", "2030-01-01 06:00"}, "KRKRRR", RETAIN_DAILY},
	/* count left at the oldest backup: the oldest is kept too (restic >= 0.14) */
	{"daily 5 keeps the oldest", UTC, "2030-06-01 00:00", {.daily = 5},
	 {"2030-01-03 18:00", "2030-01-03 06:00", "2030-01-02 18:00", "2030-01-02 06:00",
	  "2030-01-01 18:00", "2030-01-01 06:00"}, "KRKRKK", 0},
	{"hourly 3", UTC, "2030-06-01 00:00", {.hourly = 3},
	 {"2030-01-01 10:50", "2030-01-01 10:10", "2030-01-01 09:30", "2030-01-01 08:59",
	  "2030-01-01 08:01", "2030-01-01 07:00"}, "KRKKRR", RETAIN_HOURLY},
	/* 2026 has 53 ISO weeks: 2026-12-28 (Mon) .. 2027-01-03 (Sun) is 2026-W53 */
	{"weekly across the ISO year end", UTC, "2030-06-01 00:00", {.weekly = 3},
	 {"2027-01-04 12:00", "2027-01-03 12:00", "2027-01-01 12:00", "2026-12-31 12:00",
	  "2026-12-28 12:00", "2026-12-27 12:00"}, "KKRRRK", RETAIN_WEEKLY},
	/* 2027-01-02 and 2026-12-28 share 2026-W53; a calendar-year week number splits them */
	{"weekly: ISO year, not calendar year", UTC, "2030-06-01 00:00", {.weekly = 2},
	 {"2027-01-02 12:00", "2026-12-28 12:00", "2026-12-21 12:00"}, "KRK", 0},
	/* 2025-12-29 (Mon) starts 2026-W01 */
	{"weekly: late December in next year's week 1", UTC, "2030-06-01 00:00", {.weekly = 2},
	 {"2026-01-02 12:00", "2025-12-29 12:00", "2025-12-28 12:00"}, "KRK", 0},
	{"monthly 2", UTC, "2030-06-01 00:00", {.monthly = 2},
	 {"2030-03-15 00:00", "2030-03-01 00:00", "2030-02-28 00:00", "2030-01-31 00:00",
	  "2030-01-01 00:00"}, "KRKRR", RETAIN_MONTHLY},
	{"monthly 4 keeps the oldest", UTC, "2030-06-01 00:00", {.monthly = 4},
	 {"2030-03-15 00:00", "2030-03-01 00:00", "2030-02-28 00:00", "2030-01-31 00:00",
	  "2030-01-01 00:00"}, "KRKKK", 0},
	{"yearly 2", UTC, "2030-06-01 00:00", {.yearly = 2},
	 {"2029-06-01 00:00", "2029-01-01 00:00", "2028-12-31 00:00", "2027-05-01 00:00"},
	 "KRKR", RETAIN_YEARLY},
	{"yearly unlimited", UTC, "2030-06-01 00:00", {.yearly = -1},
	 {"2029-06-01 00:00", "2029-01-01 00:00", "2028-12-31 00:00", "2027-05-01 00:00",
	  "2027-01-01 00:00"}, "KRKKK", 0},
	/* rules ORed, each counted on its own: the first backup uses up last's only count */
	{"last 1 + daily 2", UTC, "2030-06-01 00:00", {.last = 1, .daily = 2},
	 {"2030-01-03 18:00", "2030-01-03 06:00", "2030-01-02 12:00", "2030-01-01 12:00"}, "KRKR",
	 RETAIN_LAST | RETAIN_DAILY},
	/* 2030-01-09 is a Wednesday: Tue is in the same week, the Friday before is not */
	{"daily 1 + weekly 2", UTC, "2030-06-01 00:00", {.daily = 1, .weekly = 2},
	 {"2030-01-09 12:00", "2030-01-08 12:00", "2030-01-04 12:00"}, "KRK",
	 RETAIN_DAILY | RETAIN_WEEKLY},
	/* newest 01-10 12:00 - 2d = 01-08 12:00; kept only when strictly after */
	{"within 2d", UTC, "2030-06-01 00:00", {.within = {.days = 2}},
	 {"2030-01-10 12:00", "2030-01-09 00:00", "2030-01-08 12:01", "2030-01-08 12:00",
	  "2030-01-07 00:00"}, "KKKRR", RETAIN_WITHIN},
	{"within measured from the newest backup, not now", UTC, "2031-06-01 00:00",
	 {.within = {.days = 1}},
	 {"2030-01-10 12:00", "2030-01-09 13:00", "2030-01-09 11:00"}, "KKR", 0},
	{"within 4h", UTC, "2030-06-01 00:00", {.within = {.seconds = 4 * 3600}},
	 {"2030-01-10 12:00", "2030-01-10 08:30", "2030-01-10 08:00"}, "KKR", 0},
	/* 2030-03-31 - 1 month = "Feb 31" = 2030-03-03, as Go's AddDate normalises */
	{"within 1m from the 31st", UTC, "2030-06-01 00:00", {.within = {.months = 1}},
	 {"2030-03-31 00:00", "2030-03-03 00:01", "2030-03-03 00:00", "2030-02-28 00:00"}, "KKRR",
	 0},
	/* 2028-02-29 - 1y = "2027-02-29" = 2027-03-01 */
	{"within 1y from a leap day", UTC, "2030-06-01 00:00", {.within = {.years = 1}},
	 {"2028-02-29 12:00", "2027-03-01 13:00", "2027-03-01 12:00"}, "KKR", 0},
	{"within + last", UTC, "2030-06-01 00:00", {.last = 1, .within = {.days = 1}},
	 {"2030-01-10 12:00", "2030-01-10 01:00", "2030-01-08 00:00", "2030-01-07 00:00"}, "KKRR",
	 RETAIN_LAST | RETAIN_WITHIN},
	{"within + daily", UTC, "2030-06-01 00:00", {.daily = 2, .within = {.seconds = 12 * 3600}},
	 {"2030-01-10 12:00", "2030-01-10 06:00", "2030-01-09 23:00", "2030-01-09 10:00",
	  "2030-01-08 10:00"}, "KKKRR", RETAIN_DAILY | RETAIN_WITHIN},
	/* future-dated backups: kept, and they use up no count */
	{"future kept and not counted", UTC, "2030-01-10 00:00", {.last = 2},
	 {"2031-01-01 00:00", "2030-01-09 00:00", "2030-01-08 00:00", "2030-01-07 00:00"}, "KKKR",
	 RETAIN_FUTURE},
	{"future does not move within's newest", UTC, "2030-01-10 00:00", {.within = {.days = 1}},
	 {"2031-01-01 00:00", "2030-01-09 12:00", "2030-01-08 13:00", "2030-01-08 11:00"}, "KKKR",
	 RETAIN_FUTURE},
	{"all in the future", UTC, "2020-01-01 00:00", {.last = 1},
	 {"2030-01-02 00:00", "2030-01-01 00:00"}, "KK", RETAIN_FUTURE},
	/* equal times (backups of one snapshot): the later in the input, made later, is newer */
	{"ties: the one made later", UTC, "2030-06-01 00:00", {.last = 1},
	 {"2030-01-01 00:00", "2030-01-01 00:00"}, "RK", 0},
	/* Berlin, 2030-10-27: 03:00 CEST becomes 02:00 CET at 01:00Z, so 00:30Z and 01:30Z are
	 * both 02:30 local: one hourly period. */
	{"hourly over the autumn DST change", BERLIN, "2031-01-01 00:00", {.hourly = 3},
	 {"2030-10-27 01:30Z", "2030-10-27 00:30Z", "2030-10-26 23:30Z", "2030-10-26 22:30Z"},
	 "KRKK", 0},
	/* 22:30Z on the 26th is 00:30 on the 27th in Berlin: same local day as 01:30Z */
	{"daily is local time, not UTC", BERLIN, "2031-01-01 00:00", {.daily = 2},
	 {"2030-10-27 01:30Z", "2030-10-26 22:30Z", "2030-10-26 21:30Z"}, "KRK", 0},
	/* Berlin, 2030-03-31 springs forward: newest 12:00 CEST (10:00Z) - 1 day (calendar) =
	 * 2030-03-30 12:00 CET = 11:00Z, not 24 hours (10:00Z). */
	{"within 1d over the spring DST change", BERLIN, "2031-01-01 00:00",
	 {.within = {.days = 1}},
	 {"2030-03-31 10:00Z", "2030-03-30 11:30Z", "2030-03-30 10:30Z"}, "KKR", 0},
	{"one backup, daily 1", UTC, "2030-06-01 00:00", {.daily = 1},
	 {"2030-01-01 00:00"}, "K", RETAIN_DAILY},
};

static int64_t parse_time(const char *s)
{
	struct tm tm = {0};
	const char *end = strptime(s, "%Y-%m-%d %H:%M", &tm);
	if (!end) {
		fprintf(stderr, "bad time in test table: %s\n", s);
		exit(2);
	}
	time_t t;
	if (*end == 'Z') {
		t = timegm(&tm);
	} else {
		tm.tm_isdst = -1;
		t = mktime(&tm);
	}
	return (int64_t)t * 1000000000LL;
}

static void run_case(const struct tcase *c)
{
	setenv("TZ", c->tz, 1);
	tzset();
	struct retention_item items[10] = {0};
	size_t n = 0;
	while (n < 10 && c->times[n]) {
		items[n].time_ns = parse_time(c->times[n]);
		n++;
	}
	CHECK(retention_apply(items, n, &c->p, parse_time(c->now)) == 0);
	char got[11] = {0};
	for (size_t i = 0; i < n; i++)
		got[i] = items[i].reasons ? 'K' : 'R';
	if (strcmp(got, c->expect) != 0) {
		fprintf(stderr, "case \"%s\": expected %s, got %s\n", c->name, c->expect, got);
		failures++;
	}
	if (c->first_reasons && items[0].reasons != c->first_reasons) {
		fprintf(stderr, "case \"%s\": first backup's reasons %#x, expected %#x\n", c->name,
			items[0].reasons, c->first_reasons);
		failures++;
	}
}

static void test_empty_policy(void)
{
	struct retention_policy p = {0};
	CHECK(retention_policy_empty(&p));
	p.within.seconds = 60;
	CHECK(!retention_policy_empty(&p));
	p = (struct retention_policy){.yearly = -1};
	CHECK(!retention_policy_empty(&p));
	CHECK(retention_apply(NULL, 0, &p, 0) == 0);
}

/* A kept incremental keeps the chain it follows, up to its full backup, and nothing else; a
 * chain no kept incremental needs goes as the rules say. Newest first: i3 i2 f2 i1 f1 f0. */
static void test_bases(void)
{
	struct retention_item it[] = {
		{.time_ns = 600, .name = "i3", .previous = "i2"},
		{.time_ns = 500, .name = "i2", .previous = "f2"},
		{.time_ns = 400, .name = "f2"},
		{.time_ns = 300, .name = "i1", .previous = "f1"},
		{.time_ns = 200, .name = "f1"},
		{.time_ns = 100, .name = "f0"},
	};
	struct retention_policy p = {.last = 1};
	CHECK(retention_apply(it, 6, &p, 1000) == 0);
	CHECK(it[0].reasons == RETAIN_LAST && it[1].reasons == RETAIN_BASE &&
	      it[2].reasons == RETAIN_BASE);
	CHECK(!it[3].reasons && !it[4].reasons && !it[5].reasons);
	p = (struct retention_policy){.last = 4};
	CHECK(retention_apply(it, 6, &p, 1000) == 0);
	CHECK(it[3].reasons == RETAIN_LAST && it[4].reasons == RETAIN_BASE && !it[5].reasons);
	CHECK(strcmp(retention_reason_name(RETAIN_BASE), "base") == 0);
}

/* A node's clock stepped back between a full backup and the incrementals that follow it:
 * they are dated before it (and listed before it, as the catalog orders by that date), but
 * hold what was flushed after it, so they count as newer. The policy used to keep f1 and
 * forget i1 and i2, whose data no other backup holds. */
static void test_incrementals_dated_before_their_base(void)
{
	struct retention_item it[] = {
		{.time_ns = 200, .name = "i2", .previous = "i1"},
		{.time_ns = 300, .name = "i1", .previous = "f1"},
		{.time_ns = 100, .name = "f0"},
		{.time_ns = 500, .name = "f1"},
	};
	struct retention_policy p = {.last = 1};
	CHECK(retention_apply(it, 4, &p, 1000) == 0);
	CHECK(it[0].reasons == RETAIN_LAST && it[1].reasons == RETAIN_BASE &&
	      it[3].reasons == RETAIN_BASE && !it[2].reasons);
	p = (struct retention_policy){.last = 2};
	CHECK(retention_apply(it, 4, &p, 1000) == 0);
	CHECK(it[0].reasons == RETAIN_LAST && it[1].reasons == RETAIN_LAST && !it[2].reasons);
	/* an incremental made with the clock years ahead is kept as future-dated; what follows
	 * it, dated now, is not future-dated too (all of its chain was kept, for years) */
	struct retention_item ahead[] = {
		{.time_ns = 100, .name = "f1"},
		{.time_ns = 9000, .name = "i1", .previous = "f1"},
		{.time_ns = 200, .name = "i2", .previous = "i1"},
		{.time_ns = 300, .name = "i3", .previous = "i2"},
		{.time_ns = 400, .name = "f2"},
	};
	p = (struct retention_policy){.last = 1};
	CHECK(retention_apply(ahead, 5, &p, 1000) == 0);
	CHECK(ahead[1].reasons == RETAIN_FUTURE && ahead[0].reasons == RETAIN_BASE);
	CHECK(!ahead[2].reasons && !ahead[3].reasons && ahead[4].reasons == RETAIN_LAST);
	/* a chain that loops (a damaged store) is followed n steps, no more */
	struct retention_item loop[] = {
		{.time_ns = 100, .name = "a", .previous = "b"},
		{.time_ns = 200, .name = "b", .previous = "a"},
	};
	CHECK(retention_apply(loop, 2, &p, 1000) == 0);
	CHECK(loop[0].reasons && loop[1].reasons);
}

int main(void)
{
	test_bases();
	test_incrementals_dated_before_their_base();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
	test_empty_policy();
	CHECK(strcmp(retention_reason_name(RETAIN_WEEKLY), "weekly") == 0);
	if (failures) {
		fprintf(stderr, "test_retention: %d checks failed\n", failures);
		return 1;
	}
	printf("test_retention: all checks passed (%zu policy cases)\n",
	       sizeof(cases) / sizeof(cases[0]));
	return 0;
}
