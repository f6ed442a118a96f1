/* Unit tests for catalog/awscred.c: temporary credentials renewed while many threads sign
 * with them (a mount's readers), through a credential_process that hands out a new key each
 * time, due for renewal a second after it is given (expiring 301 s later: the margin is 5
 * minutes), and that fails if two renewals ever run at once. No thread may ever get an
 * error, nor keys that expired. */
#include "awscred.h"
#include "backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define THREADS 8
#define ROTATIONS 3

static char dir[64];
static atomic_int errors, done;
static atomic_long gets;

static int count_issued(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/count", dir);
	FILE *f = fopen(path, "r");
	int n = 0;
	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = 0;
		fclose(f);
	}
	return n;
}

static void *reader(void *arg)
{
	struct awscred *a = arg;
	while (!atomic_load(&done)) {
		struct awscred_keys k = {0};
		int r = awscred_get(a, &k);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		if (r < 0 || !k.access_key || strncmp(k.access_key, "ASIATEST", 8) ||
		    !k.secret_key || !k.token || k.expires_ns <= (int64_t)ts.tv_sec * 1000000000) {
			fprintf(stderr, "awscred_get: %d %s\n", r, cb_backend_last_error());
			atomic_fetch_add(&errors, 1);
		}
		awscred_keys_clear(&k);
		atomic_fetch_add(&gets, 1);
	}
	return NULL;
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/awscred-test-XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	char script[128], config[128];
	snprintf(script, sizeof(script), "%s/helper", dir);
	snprintf(config, sizeof(config), "%s/config", dir);
	FILE *f = fopen(script, "w");
	CHECK(f != NULL);
	/* mkdir is the lock: a second renewal at the same time fails (exit 1) */
	fprintf(f, "#!/bin/sh\nset -e\nd=%s\nmkdir \"$d/lock\" 2>/dev/null || { touch \"$d/overlap\"; exit 1; }\n"
		   "n=$(cat \"$d/count\" 2>/dev/null || echo 0); n=$((n + 1))\n"
		   "sleep 0.2\n"
		   "printf '{\"Version\": 1, \"AccessKeyId\": \"ASIATEST%%d\", \"SecretAccessKey\": "
		   "\"s%%d\", \"SessionToken\": \"t%%d\", \"Expiration\": \"%%s\"}' $n $n $n "
		   "\"$(date -u -d '+301 seconds' +%%Y-%%m-%%dT%%H:%%M:%%SZ)\"\n"
		   "echo $n > \"$d/count\"\nrmdir \"$d/lock\"\n", dir);
	fclose(f);
	chmod(script, 0700);
	f = fopen(config, "w");
	CHECK(f != NULL);
	fprintf(f, "[profile rot]\ncredential_process = %s\n", script);
	fclose(f);
	setenv("AWS_CONFIG_FILE", config, 1);
	setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent", 1);
	setenv("AWS_PROFILE", "rot", 1);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");

	struct awscred *a = NULL;
	struct awscred_config cfg = {0};
	CHECK(awscred_new(&cfg, &a) == 0);
	CHECK(a && !strcmp(awscred_source(a), "credential_process of profile rot"));
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, reader, a) == 0);
	while (count_issued() < 1 + ROTATIONS && atomic_load(&errors) == 0)
		usleep(50000); /* waits for the condition; the readers do the work */
	atomic_store(&done, 1);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	CHECK(atomic_load(&errors) == 0);
	CHECK(count_issued() >= 1 + ROTATIONS);
	char overlap[128];
	snprintf(overlap, sizeof(overlap), "%s/overlap", dir);
	CHECK(access(overlap, F_OK) < 0); /* never two renewals at once */
	CHECK(atomic_load(&gets) > THREADS);
	awscred_free(a);

	/* the explicit keys come first, whatever the chain has */
	struct awscred_config ex = {.access_key = "AKIAEXPLICIT", .secret_key = "s",
				    .explicit_source = "s3_key_file /k"};
	CHECK(awscred_new(&ex, &a) == 0);
	struct awscred_keys k = {0};
	CHECK(awscred_get(a, &k) == 0 && !strcmp(k.access_key, "AKIAEXPLICIT") && !k.token);
	CHECK(!strcmp(awscred_source(a), "s3_key_file /k"));
	awscred_keys_clear(&k);
	awscred_free(a);

	/* a profile named but absent is an error that names it */
	setenv("AWS_PROFILE", "absent", 1);
	CHECK(awscred_new(&cfg, &a) == -EACCES && a == NULL);
	CHECK(strstr(cb_backend_last_error(), "profile absent is in neither"));

	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	return failures ? 1 : 0;
}
