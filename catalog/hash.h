/* hash.h: SHA-256 of files and buffers (OpenSSL's libcrypto, which uses the CPU's SHA
 * instructions where it has them). */
#ifndef CASSBACKUP_HASH_H
#define CASSBACKUP_HASH_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sha256_ctx sha256_ctx;

/* 0, or -ENOMEM with *out NULL (so sha256_free(*out) is always safe). */
int sha256_new(sha256_ctx **out);
int sha256_update(sha256_ctx *c, const void *data, size_t len);
/* Writes the digest and resets c for reuse. */
int sha256_final(sha256_ctx *c, unsigned char out[32]);
void sha256_free(sha256_ctx *c); /* accepts NULL */

/* SHA-256 of a buffer. */
int sha256_buf(const void *data, size_t len, unsigned char out[32]);

/* Called with the bytes just consumed, for progress displays. */
typedef void (*progress_fn)(void *ctx, uint64_t bytes);

/* Hashes exactly `size` bytes of fd from offset 0. -ESTALE when the file is shorter or longer
 * than size (it changed since it was looked at), -ECANCELED when *cancel became non-zero. */
int sha256_fd(int fd, uint64_t size, unsigned char out[32], const volatile sig_atomic_t *cancel,
	      progress_fn progress, void *pctx);

#endif
