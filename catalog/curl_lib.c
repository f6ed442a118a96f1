/* libcurl, loaded the first time an S3 store or a credential provider needs it.
 *
 * Linked at start, libcurl brings 30 more libraries (TLS, Kerberos, LDAP, SSH, IDN...) that
 * the dynamic loader maps and relocates in every run of cassbackup and mount.cassbackup, about
 * 4 ms of CPU each time (perf stat of an empty main linked like them: 9.7 ms, 5.4 ms without
 * libcurl), whether the run uses S3 or not. So the binaries are not
 * linked against it: this file defines the few libcurl functions the catalog library calls,
 * under their own names and with the prototypes of <curl/curl.h> (so every caller keeps
 * libcurl's API and, elsewhere, its compile-time option type checks), and each one loads
 * libcurl.so.4 with dlopen once, then calls the real function found by dlsym in it.
 *
 * Contract: cb_curl_load() loads and curl_global_init()s libcurl once per process (thread-
 * safe); 0, or -ELIBACC with one line in cb_backend_last_error() naming the library and the
 * loader's reason. Every function below works after a failed load as libcurl does when it
 * cannot allocate (NULL, CURLE_FAILED_INIT), so no caller needs a second error path; the S3
 * client and the credential chain call cb_curl_load() first and report its line.
 *
 * libcurl's soname has been libcurl.so.4 since 7.16; the headers compiled against are the same
 * package's (meson.build).
 */
#define CURL_DISABLE_TYPECHECK /* the definitions below are the functions, not the macros */
#include <curl/curl.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "backend_i.h"
#include "s3.h"

#define CURL_SONAME "libcurl.so.4"

static struct {
	CURLcode (*global_init)(long flags);
	CURL *(*easy_init)(void);
	void (*easy_cleanup)(CURL *h);
	void (*easy_reset)(CURL *h);
	CURLcode (*easy_perform)(CURL *h);
	CURLcode (*easy_setopt)(CURL *h, CURLoption option, ...);
	CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
	const char *(*easy_strerror)(CURLcode code);
	struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
	void (*slist_free_all)(struct curl_slist *list);
} lib;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_error;         /* 0 once loaded and initialised */
static char load_why[256];     /* the loader's words when it failed */

static void load(void)
{
	/* POSIX: a function's address converts through void * (dlsym's own contract) */
	const struct {
		const char *name;
		void **slot;
	} symbols[] = {
		{"curl_global_init", (void **)&lib.global_init},
		{"curl_easy_init", (void **)&lib.easy_init},
		{"curl_easy_cleanup", (void **)&lib.easy_cleanup},
		{"curl_easy_reset", (void **)&lib.easy_reset},
		{"curl_easy_perform", (void **)&lib.easy_perform},
		{"curl_easy_setopt", (void **)&lib.easy_setopt},
		{"curl_easy_getinfo", (void **)&lib.easy_getinfo},
		{"curl_easy_strerror", (void **)&lib.easy_strerror},
		{"curl_slist_append", (void **)&lib.slist_append},
		{"curl_slist_free_all", (void **)&lib.slist_free_all},
	};
	load_error = -ELIBACC;
	void *h = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(load_why, sizeof(load_why), "%s", dlerror());
		return;
	}
	for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
		*symbols[i].slot = dlsym(h, symbols[i].name);
		if (!*symbols[i].slot) {
			snprintf(load_why, sizeof(load_why), "no %s in it", symbols[i].name);
			return; /* h stays open: nothing of it is called, and unloading gains nothing */
		}
	}
	CURLcode cc = lib.global_init(CURL_GLOBAL_DEFAULT);
	if (cc != CURLE_OK) {
		snprintf(load_why, sizeof(load_why), "curl_global_init: %s", lib.easy_strerror(cc));
		return;
	}
	load_error = 0;
}

int cb_curl_load(void)
{
	pthread_once(&load_once, load);
	if (load_error)
		cb_backend_set_error("cannot load %s (S3 needs libcurl: apt-get install libcurl4): %s",
				     CURL_SONAME, load_why);
	return load_error;
}

static bool loaded(void)
{
	pthread_once(&load_once, load);
	return load_error == 0;
}

CURL *curl_easy_init(void) { return loaded() ? lib.easy_init() : NULL; }

void curl_easy_cleanup(CURL *h)
{
	if (h && loaded())
		lib.easy_cleanup(h);
}

void curl_easy_reset(CURL *h)
{
	if (h && loaded())
		lib.easy_reset(h);
}

CURLcode curl_easy_perform(CURL *h) { return loaded() ? lib.easy_perform(h) : CURLE_FAILED_INIT; }

const char *curl_easy_strerror(CURLcode code)
{
	return loaded() ? lib.easy_strerror(code) : "libcurl could not be loaded";
}

struct curl_slist *curl_slist_append(struct curl_slist *list, const char *s)
{
	return loaded() ? lib.slist_append(list, s) : NULL;
}

void curl_slist_free_all(struct curl_slist *list)
{
	if (list && loaded())
		lib.slist_free_all(list);
}

/* An option's argument has the type its number's range says (curl.h CURLOPTTYPE_*): long,
 * an object pointer, a function pointer, curl_off_t, or a struct curl_blob pointer. */
CURLcode curl_easy_setopt(CURL *h, CURLoption option, ...)
{
	if (!loaded())
		return CURLE_FAILED_INIT;
	typedef void (*function)(void);
	va_list ap;
	va_start(ap, option);
	CURLcode cc;
	if (option < CURLOPTTYPE_OBJECTPOINT)
		cc = lib.easy_setopt(h, option, va_arg(ap, long));
	else if (option < CURLOPTTYPE_FUNCTIONPOINT)
		cc = lib.easy_setopt(h, option, va_arg(ap, void *));
	else if (option < CURLOPTTYPE_OFF_T)
		cc = lib.easy_setopt(h, option, va_arg(ap, function));
	else if (option < CURLOPTTYPE_BLOB)
		cc = lib.easy_setopt(h, option, va_arg(ap, curl_off_t));
	else
		cc = lib.easy_setopt(h, option, va_arg(ap, void *));
	va_end(ap);
	return cc;
}

/* Every CURLINFO_* takes one pointer, to where the answer goes. */
CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
	if (!loaded())
		return CURLE_FAILED_INIT;
	va_list ap;
	va_start(ap, info);
	CURLcode cc = lib.easy_getinfo(h, info, va_arg(ap, void *));
	va_end(ap);
	return cc;
}
