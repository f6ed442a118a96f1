/* Unit tests of store locks (catalog/lock.c): shared and exclusive, who holds a lock, stale
 * locks (dead process on this host, not refreshed, unreadable), waiting, read-only stores. */
#include "lock.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static unsigned waited;
static void on_wait(void *ctx, const struct lock_info *h)
{
	(void)ctx;
	(void)h;
	waited++;
}

static void put_lock(struct cb_backend *b, const char *key, const char *host, long pid,
		     int64_t time_ns, int exclusive)
{
	char doc[512];
	snprintf(doc, sizeof(doc),
		 "{\"host\": \"%s\", \"command\": \"prune\", \"pid\": %ld, \"exclusive\": %s, \"time_ns\": %lld}",
		 host, pid, exclusive ? "true" : "false", (long long)time_ns);
	CHECK(cb_backend_put(b, key, doc, strlen(doc), 0) == 0);
}

static pid_t dead_pid(void)
{
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	waitpid(p, NULL, 0);
	return p;
}

int main(void)
{
	char root[] = "/tmp/cb-test-lock-XXXXXX", host[256], cmd[300];
	if (!mkdtemp(root))
		return 2;
	gethostname(host, sizeof(host));
	struct cb_backend *b;
	CHECK(cb_backend_open(root, 0, NULL, &b) == 0);

	struct store_lock *s1, *s2, *x;
	struct lock_info h = {0};
	CHECK(store_lock_take(b, false, "create", 0, NULL, NULL, &s1, NULL) == 0);
	CHECK(store_lock_take(b, false, "create", 0, NULL, NULL, &s2, NULL) == 0);
	CHECK(store_lock_take(b, true, "prune", 0, NULL, NULL, &x, &h) == -EBUSY && x == NULL);
	CHECK(!strcmp(h.command, "create") && !strcmp(h.host, host) && h.pid == getpid() && !h.exclusive);
	store_lock_release(s1);
	store_lock_release(s2);
	CHECK(store_lock_take(b, true, "prune", 0, NULL, NULL, &x, NULL) == 0);
	CHECK(store_lock_take(b, false, "create", 0, NULL, NULL, &s1, &h) == -EBUSY);
	CHECK(h.exclusive && !strcmp(h.command, "prune"));
	store_lock_release(x);

	/* Stale: a dead process on this host; not refreshed for 31 minutes; unreadable. */
	put_lock(b, "locks/dead.json", host, dead_pid(), now_ns(), 1);
	put_lock(b, "locks/old.json", "elsewhere", 1, now_ns() - 31LL * 60 * 1000000000LL, 1);
	CHECK(cb_backend_put(b, "locks/junk.json", "\x01garbage", 8, 0) == 0);
	put_lock(b, "locks/live-elsewhere.json", "elsewhere", 1, now_ns(), 0);
	CHECK(store_lock_take(b, false, "create", 0, NULL, NULL, &s1, NULL) == 0);
	unsigned removed = 0;
	CHECK(store_unlock(b, false, &removed) == 0 && removed == 3);
	CHECK(store_lock_take(b, true, "prune", 0, NULL, NULL, &x, &h) == -EBUSY);
	store_lock_release(s1);
	CHECK(store_unlock(b, true, &removed) == 0 && removed == 1);

	/* Waiting for a holder that goes away. */
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
	CHECK(store_lock_take(b, true, "prune", 20, on_wait, NULL, &x, NULL) == 0);
	CHECK(waited == 1);
	store_lock_release(x);
	int ws;
	waitpid(child, &ws, 0);
	CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);

	struct cb_backend *ro;
	CHECK(cb_backend_open(root, CB_BACKEND_READONLY, NULL, &ro) == 0);
	CHECK(store_lock_take(ro, false, "verify", 0, NULL, NULL, &x, NULL) == -EROFS);
	cb_backend_close(ro);

	struct lock_info li;
	CHECK(lock_info_parse("{}", 2, &li) == -EBADMSG);
	CHECK(lock_info_parse("{\"host\": \"h\", \"command\": \"c\", \"pid\": -1, \"exclusive\": true, \"time_ns\": 1}", 73, &li) == -EBADMSG);
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
