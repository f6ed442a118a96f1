/* Unit tests of store locks (catalog/lock.c): shared and exclusive, who holds a lock, stale
 * locks (dead process on this host, not renewed by the store's clock, unreadable; never by the
 * holder's clock), waiting, read-only stores; the lease: renewals, the lapsed mark when the
 * holder was paused or its object removed, store_lock_check; periods from the environment. */
#include "lock.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define S 1000000000LL
#define MS 1000000LL

static unsigned waited;
static void on_wait(void *ctx, const struct lock_info *h)
{
	(void)ctx;
	(void)h;
	waited++;
}

static char root[] = "/tmp/cb-test-lock-XXXXXX";

/* A lock document; space: its pid space (NULL: none, as older versions wrote). */
static void put_lock_in(struct cb_backend *b, const char *key, const char *host, long pid,
			int64_t time_ns, int exclusive, const char *space)
{
	char doc[512], sp[160] = "";
	if (space)
		snprintf(sp, sizeof(sp), ", \"pid_space\": \"%s\"", space);
	snprintf(doc, sizeof(doc),
		 "{\"host\": \"%s\", \"command\": \"prune\", \"pid\": %ld, \"exclusive\": %s, \"time_ns\": %lld%s}",
		 host, pid, exclusive ? "true" : "false", (long long)time_ns, sp);
	CHECK(cb_backend_put(b, key, doc, strlen(doc), 0) == 0);
}

/* A lock document written from this pid space. */
static void put_lock(struct cb_backend *b, const char *key, const char *host, long pid,
		     int64_t time_ns, int exclusive)
{
	char space[96];
	lock_pid_space(space, sizeof(space));
	put_lock_in(b, key, host, pid, time_ns, exclusive, space);
}

/* Sets the store's modification time of a local store's object: ago_s seconds before now. */
static void age_object(const char *key, int ago_s)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", root, key);
	struct timespec t[2];
	clock_gettime(CLOCK_REALTIME, &t[0]);
	t[0].tv_sec -= ago_s;
	t[1] = t[0];
	CHECK(utimensat(AT_FDCWD, path, t, 0) == 0);
}

static int count_objects(void *ctx, const char *key, uint64_t size)
{
	(void)key;
	(void)size;
	(*(unsigned *)ctx)++;
	return 0;
}

static pid_t dead_pid(void)
{
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	waitpid(p, NULL, 0);
	return p;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

struct seen {
	char keys[16][64];
	struct lock_info li[16];
	unsigned n;
};

static int remember(void *ctx, const struct lock_info *li)
{
	struct seen *s = ctx;
	if (s->n < 16) {
		snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", li->key);
		s->li[s->n++] = *li;
	}
	return 0;
}

static const struct lock_info *find(const struct seen *s, const char *key)
{
	for (unsigned i = 0; i < s->n; i++)
		if (!strcmp(s->keys[i], key))
			return &s->li[i];
	return NULL;
}

static void test_shared_exclusive(struct cb_backend *b, const char *host)
{
	struct store_lock *s1, *s2, *x;
	struct lock_info h = {0};
	CHECK(store_lock_take(b, false, "create", 0, NULL, NULL, &s1, NULL) == 0);
	CHECK(store_lock_take(b, false, "create", 0, NULL, NULL, &s2, NULL) == 0);
	CHECK(store_lock_take(b, true, "prune", 0, NULL, NULL, &x, &h) == -EBUSY && x == NULL);
	CHECK(!strcmp(h.command, "create") && !strcmp(h.host, host) && h.pid == getpid() && !h.exclusive);
	CHECK(!h.stale && h.age_ns >= 0 && h.age_ns < 60 * S && h.mtime_ns > 0);
	store_lock_release(s1);
	store_lock_release(s2);
	CHECK(store_lock_take(b, true, "prune", 0, NULL, NULL, &x, NULL) == 0);
	CHECK(store_lock_take(b, false, "create", 0, NULL, NULL, &s1, &h) == -EBUSY);
	CHECK(h.exclusive && !strcmp(h.command, "prune"));
	/* a lock held all along passes its check, and names nothing */
	struct strbuf err = {0};
	CHECK(store_lock_check(x, &err) == 0 && err.len == 0);
	CHECK(store_lock_check(NULL, &err) == 0);
	store_lock_release(x);
	sb_free(&err);
}

/* A lock taken over another the caller holds: the held one is no conflict and stays until
 * released; another command's lock still is one. */
static void test_take_over(struct cb_backend *b)
{
	struct store_lock *shared, *x, *back, *other;
	struct lock_info h = {0};
	CHECK(store_lock_take(b, false, "prune", 0, NULL, NULL, &shared, NULL) == 0);
	CHECK(store_lock_take(b, false, "create", 0, NULL, NULL, &other, NULL) == 0);
	CHECK(store_lock_take_over(shared, true, 0, NULL, NULL, &x, &h) == -EBUSY && x == NULL);
	CHECK(!strcmp(h.command, "create"));
	store_lock_release(other);
	CHECK(store_lock_take_over(shared, true, 0, NULL, NULL, &x, NULL) == 0);
	/* both are there until the caller lets go of the shared one: a newcomer sees each */
	CHECK(store_lock_take(b, false, "create", 0, NULL, NULL, &other, &h) == -EBUSY && h.exclusive);
	store_lock_release(shared);
	/* and back: the shared one is taken while the exclusive one is held */
	CHECK(store_lock_take_over(x, false, 0, NULL, NULL, &back, NULL) == 0);
	store_lock_release(x);
	CHECK(store_lock_take(b, false, "create", 0, NULL, NULL, &other, NULL) == 0);
	store_lock_release(other);
	store_lock_release(back);
}

/* Staleness is the store's: the objects' modification times, never the holders' time_ns. */
static void test_stale_by_store_clock(struct cb_backend *b, const char *host)
{
	put_lock(b, "locks/dead.json", host, dead_pid(), now_ns(), 1);
	/* the holder's clock says fresh; the store has not seen it renewed for 31 minutes */
	put_lock(b, "locks/old.json", "elsewhere", 1, now_ns(), 1);
	age_object("locks/old.json", 31 * 60);
	/* the holder's clock runs 31 minutes behind (or the observer's ahead): live all the same */
	put_lock(b, "locks/behind.json", "elsewhere", 1, now_ns() - 31LL * 60 * S, 0);
	CHECK(cb_backend_put(b, "locks/junk.json", "\x01garbage", 8, 0) == 0);
	put_lock(b, "locks/live-elsewhere.json", "elsewhere", 1, now_ns(), 0);
	age_object("locks/live-elsewhere.json", 29 * 60);
	/* this host's name and a pid no process here has, but another pid namespace (a container
	 * sharing the host's name) or a document without one: not judged dead by pid here */
	put_lock_in(b, "locks/other-pid-space.json", host, dead_pid(), now_ns(), 0, "another-boot/1:2");
	put_lock_in(b, "locks/no-pid-space.json", host, dead_pid(), now_ns(), 0, NULL);

	struct seen seen = {0};
	CHECK(store_lock_list(b, NULL, remember, &seen) == 0 && seen.n == 7);
	CHECK(find(&seen, "locks/other-pid-space.json") && !find(&seen, "locks/other-pid-space.json")->stale);
	CHECK(find(&seen, "locks/no-pid-space.json") && !find(&seen, "locks/no-pid-space.json")->stale);
	const struct lock_info *old = find(&seen, "locks/old.json");
	const struct lock_info *behind = find(&seen, "locks/behind.json");
	const struct lock_info *live = find(&seen, "locks/live-elsewhere.json");
	CHECK(old && old->stale && old->age_ns > 30 * 60 * S && old->age_ns < 32 * 60 * S);
	CHECK(behind && !behind->stale && behind->age_ns < 60 * S);
	CHECK(live && !live->stale);
	CHECK(find(&seen, "locks/dead.json") && find(&seen, "locks/dead.json")->stale);
	CHECK(find(&seen, "locks/junk.json") && find(&seen, "locks/junk.json")->stale);
	/* the probe that gave the store's now is gone */
	unsigned objects = 0;
	CHECK(cb_backend_list(b, "locks/", count_objects, &objects) == 0 && objects == 7);

	struct store_lock *s1, *x;
	struct lock_info h;
	CHECK(store_lock_take(b, false, "create", 0, NULL, NULL, &s1, NULL) == 0);
	CHECK(store_lock_take(b, true, "prune", 0, NULL, NULL, &x, &h) == -EBUSY);
	unsigned removed = 0;
	struct seen kept = {0};
	CHECK(store_unlock(b, false, &removed, remember, NULL, &kept) == 0 && removed == 3);
	CHECK(kept.n == 5 && find(&kept, "locks/behind.json") && find(&kept, "locks/live-elsewhere.json"));
	store_lock_release(s1);
	CHECK(store_unlock(b, true, &removed, NULL, NULL, NULL) == 0 && removed == 4);
	seen.n = 0;
	CHECK(store_lock_list(b, NULL, remember, &seen) == 0 && seen.n == 0);
}

static void test_judge(void)
{
	struct lock_periods p = {5 * S, 30 * S};
	struct lock_info li = {.host = "elsewhere", .pid = 1, .mtime_ns = 1000 * S};
	CHECK(!lock_judge(&li, 1030 * S, &p) && li.age_ns == 30 * S);
	CHECK(lock_judge(&li, 1030 * S + 1, &p) && li.age_ns == 30 * S + 1);
	CHECK(!lock_judge(&li, 900 * S, &p) && li.age_ns == 0); /* renewed after the observer wrote */
	CHECK(!lock_judge(&li, 0, &p) && li.age_ns == -1);      /* the store's now unknown */
	li.mtime_ns = 0;
	CHECK(!lock_judge(&li, 5000 * S, &p) && li.age_ns == -1);
	li.host[0] = '\0';
	CHECK(lock_judge(&li, 0, &p));                          /* not a lock document */
}

static void test_waiting(struct cb_backend *b)
{
	pid_t child = fork();
	if (child == 0) {
		struct store_lock *c;
		if (store_lock_take(b, false, "create", 0, NULL, NULL, &c, NULL) != 0)
			_exit(1);
		sleep(2);
		store_lock_release(c);
		_exit(0);
	}
	usleep(500000);
	waited = 0;
	struct store_lock *x;
	CHECK(store_lock_take(b, true, "prune", 20, on_wait, NULL, &x, NULL) == 0);
	CHECK(waited == 1);
	store_lock_release(x);
	int ws;
	waitpid(child, &ws, 0);
	CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
}

/* The key of the one lock of command cmd in the store. */
static int key_of(struct cb_backend *b, const char *cmd, char *key, size_t n)
{
	struct seen seen = {0};
	int found = 0;
	CHECK(store_lock_list(b, NULL, remember, &seen) == 0);
	for (unsigned i = 0; i < seen.n; i++)
		if (!strcmp(seen.li[i].command, cmd)) {
			snprintf(key, n, "%s", seen.keys[i]);
			found++;
		}
	return found == 1 ? 0 : -1;
}

/* Renewed on its thread: checks pass for many stale periods, the count goes up. */
static void test_renewed(struct cb_backend *b)
{
	struct lock_periods p = {200 * MS, 3 * S};
	struct store_lock *l;
	struct strbuf err = {0};
	CHECK(store_lock_take_with(b, &p, false, "create", 0, NULL, NULL, &l, NULL) == 0);
	for (int i = 0; i < 25; i++) { /* 5 s: more than the stale period */
		sleep_ms(200);
		CHECK(store_lock_check(l, &err) == 0);
	}
	struct seen seen = {0};
	CHECK(store_lock_list(b, NULL, remember, &seen) == 0 && seen.n == 1);
	CHECK(seen.li[0].renewals >= 10 && !seen.li[0].stale && !strcmp(seen.li[0].command, "create"));
	store_lock_release(l);
	CHECK(err.len == 0);
	sb_free(&err);
}

/* Not renewed within the stale period less its margin: lapsed, for good. (A refresh period
 * longer than that keeps the thread from renewing it.) */
static void test_lapsed_by_gap(struct cb_backend *b)
{
	struct lock_periods p = {60 * S, 1 * S};
	struct store_lock *l;
	struct strbuf err = {0};
	CHECK(store_lock_take_with(b, &p, false, "create", 0, NULL, NULL, &l, NULL) == 0);
	CHECK(store_lock_check(l, &err) == 0);
	sleep_ms(850); /* past 0.8 s (1 s less a fifth): less than the margin left */
	CHECK(store_lock_check(l, &err) == -ETIMEDOUT);
	CHECK(err.buf && strstr(err.buf, "the lock of ") && strstr(err.buf, root) &&
	      strstr(err.buf, " lapsed (not renewed for 0 s: the process was paused or the store was "
			      "unreachable), so nothing is committed"));
	CHECK(!strchr(err.buf, '\n'));
	err.len = 0;
	CHECK(store_lock_check(l, &err) == -ETIMEDOUT && err.len > 0); /* sticky */
	store_lock_release(l);
	sb_free(&err);
}

/* Another process removed the lock as stale: the next renewal finds it gone. */
static void test_lapsed_gone(struct cb_backend *b)
{
	struct lock_periods p = {100 * MS, 10 * S};
	struct store_lock *l;
	struct strbuf err = {0};
	char key[64];
	CHECK(store_lock_take_with(b, &p, false, "copy", 0, NULL, NULL, &l, NULL) == 0);
	CHECK(key_of(b, "copy", key, sizeof(key)) == 0);
	CHECK(cb_backend_delete(b, key) == 0);
	sleep_ms(300);
	CHECK(store_lock_check(l, &err) == -ETIMEDOUT);
	CHECK(err.buf && strstr(err.buf, key) && strstr(err.buf, "lapsed (") &&
	      strstr(err.buf, "was removed by another process: 'unlock --all', or one that took it "
			      "for stale), so nothing is committed"));
	/* it was not written again */
	struct seen seen = {0};
	CHECK(store_lock_list(b, NULL, remember, &seen) == 0 && seen.n == 0);
	store_lock_release(l);
	sb_free(&err);
}

/* The holder stopped (SIGSTOP) past the stale period: an exclusive taker with the same periods
 * takes the store; the holder, continued, finds its lease lapsed and stays so. */
static void test_paused_holder(struct cb_backend *b)
{
	struct lock_periods p = {200 * MS, 2 * S};
	int pipefd[2];
	CHECK(pipe(pipefd) == 0);
	pid_t child = fork();
	if (child == 0) {
		close(pipefd[0]);
		struct store_lock *l;
		struct strbuf err = {0};
		if (store_lock_take_with(b, &p, false, "create", 0, NULL, NULL, &l, NULL) != 0)
			_exit(1);
		if (write(pipefd[1], "r", 1) != 1)
			_exit(1);
		double until = mono_seconds() + 30;
		int r = 0;
		while (r == 0 && mono_seconds() < until) {
			sleep_ms(50);
			r = store_lock_check(l, &err);
		}
		if (r != -ETIMEDOUT || !strstr(err.buf, "lapsed (not renewed for "))
			_exit(2);
		if (store_lock_check(l, NULL) != -ETIMEDOUT) /* sticky, whatever renews now */
			_exit(3);
		if (write(pipefd[1], err.buf, err.len) != (ssize_t)err.len)
			_exit(1);
		store_lock_release(l);
		_exit(0);
	}
	close(pipefd[1]);
	char c;
	CHECK(read(pipefd[0], &c, 1) == 1);
	struct store_lock *x;
	struct lock_info h;
	/* live: a prune does not take it */
	CHECK(store_lock_take_with(b, &p, true, "prune", 0, NULL, NULL, &x, &h) == -EBUSY);
	CHECK(h.pid == child && !h.stale);
	sleep_ms(600);
	kill(child, SIGSTOP);
	double t0 = mono_seconds();
	waited = 0;
	CHECK(store_lock_take_with(b, &p, true, "prune", 20, on_wait, NULL, &x, NULL) == 0);
	CHECK(mono_seconds() - t0 > 1.0 && waited == 1); /* not before the store saw it stale */
	kill(child, SIGCONT);
	char msg[512] = "";
	ssize_t n = 0, k;
	while ((k = read(pipefd[0], msg + n, sizeof(msg) - 1 - (size_t)n)) > 0)
		n += k;
	int ws;
	waitpid(child, &ws, 0);
	CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	CHECK(strstr(msg, "lapsed (not renewed for "));
	close(pipefd[0]);
	store_lock_release(x);
}

/* Periods from the environment, read once: in children, each its own first reading. */
static int periods_with(const char *refresh, const char *stale, int64_t *r, int64_t *s)
{
	int fd[2];
	if (pipe(fd) < 0)
		return -1;
	pid_t child = fork();
	if (child == 0) {
		if (refresh)
			setenv("CASSBACKUP_LOCK_REFRESH_SECONDS", refresh, 1);
		if (stale)
			setenv("CASSBACKUP_LOCK_STALE_SECONDS", stale, 1);
		const struct lock_periods *p = lock_periods_default();
		int64_t v[2] = {p->refresh_ns, p->stale_ns};
		_exit(write(fd[1], v, sizeof(v)) == sizeof(v) ? 0 : 1);
	}
	close(fd[1]);
	int64_t v[2];
	ssize_t n = read(fd[0], v, sizeof(v));
	close(fd[0]);
	waitpid(child, NULL, 0);
	if (n != sizeof(v))
		return -1;
	*r = v[0];
	*s = v[1];
	return 0;
}

static void test_env_periods(void)
{
	int64_t r, s;
	const int64_t dr = LOCK_REFRESH_SECONDS * S, ds = LOCK_STALE_SECONDS * S;
	CHECK(periods_with(NULL, NULL, &r, &s) == 0 && r == dr && s == ds);
	CHECK(periods_with("1", "6", &r, &s) == 0 && r == 1 * S && s == 6 * S);
	CHECK(periods_with(NULL, "3600", &r, &s) == 0 && r == dr && s == 3600 * S);
	CHECK(periods_with("4", "6", &r, &s) == 0 && r == dr && s == ds);     /* refresh > stale / 2 */
	CHECK(periods_with("1", "6x", &r, &s) == 0 && r == dr && s == ds);    /* malformed */
	CHECK(periods_with("0", "6", &r, &s) == 0 && r == dr && s == ds);
	CHECK(periods_with("1", "86401", &r, &s) == 0 && r == dr && s == ds);
}

int main(void)
{
	char host[256], cmd[300];
	if (!mkdtemp(root))
		return 2;
	gethostname(host, sizeof(host));
	struct cb_backend *b;
	CHECK(cb_backend_open(root, 0, NULL, &b) == 0);

	test_env_periods(); /* first: this process has not read them yet, so neither have its children */
	test_shared_exclusive(b, host);
	test_take_over(b);
	test_stale_by_store_clock(b, host);
	test_judge();
	test_waiting(b);
	test_renewed(b);
	test_lapsed_by_gap(b);
	test_lapsed_gone(b);
	test_paused_holder(b);

	struct cb_backend *ro;
	struct store_lock *x;
	unsigned removed;
	CHECK(cb_backend_open(root, CB_BACKEND_READONLY, NULL, &ro) == 0);
	CHECK(store_lock_take(ro, false, "verify", 0, NULL, NULL, &x, NULL) == -EROFS);
	CHECK(store_unlock(ro, false, &removed, NULL, NULL, NULL) == -EROFS);
	cb_backend_close(ro);

	struct lock_info li;
	CHECK(lock_info_parse("{}", 2, &li) == -EBADMSG);
	CHECK(lock_info_parse("{\"host\": \"h\", \"command\": \"c\", \"pid\": -1, \"exclusive\": true, \"time_ns\": 1}", 73, &li) == -EBADMSG);
	const char *doc = "{\"host\": \"h\", \"command\": \"c\", \"pid\": 1, \"exclusive\": true, "
			  "\"time_ns\": 1, \"renewals\": 7}";
	CHECK(lock_info_parse(doc, strlen(doc), &li) == 0 && li.renewals == 7 && !li.probe);
	doc = "{\"host\": \"h\", \"command\": \"c\", \"pid\": 1, \"exclusive\": true, \"time_ns\": 1, "
	      "\"renewals\": -1}";
	CHECK(lock_info_parse(doc, strlen(doc), &li) == -EBADMSG);
	cb_backend_close(b);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	if (system(cmd) != 0)
		failures++;
	if (failures) {
		fprintf(stderr, "test_lock: %d checks failed\n", failures);
		return 1;
	}
	printf("test_lock: all checks passed\n");
	return 0;
}
