/* clockshift.so: an LD_PRELOAD shim for tests that moves this process's wall clock by
 * CASSBACKUP_TEST_CLOCK_SHIFT seconds (may be negative): clock_gettime(CLOCK_REALTIME and
 * its coarse and TAI variants), time() and gettimeofday(). The monotonic and boot clocks,
 * and the kernel's own clock (file times, what a server writes), stay as they are: as on a
 * host whose clock runs ahead of the store's. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long shift(void)
{
	static long long s = -1;
	static int known;
	if (!known) {
		const char *v = getenv("CASSBACKUP_TEST_CLOCK_SHIFT");
		s = v ? strtoll(v, NULL, 10) : 0;
		known = 1;
	}
	return s;
}

static int shifted(clockid_t id)
{
	return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE || id == CLOCK_TAI;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
	static int (*real)(clockid_t, struct timespec *);
	if (!real)
		real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
	int r = real(id, ts);
	if (r == 0 && shifted(id))
		ts->tv_sec += (time_t)shift();
	return r;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
	static int (*real)(struct timeval *restrict, void *restrict);
	if (!real)
		real = (int (*)(struct timeval *restrict, void *restrict))dlsym(RTLD_NEXT, "gettimeofday");
	int r = real(tv, tz);
	if (r == 0) /* tv: nonnull, as glibc declares it */
		tv->tv_sec += (time_t)shift();
	return r;
}

time_t time(time_t *t)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (t)
		*t = ts.tv_sec;
	return ts.tv_sec;
}
