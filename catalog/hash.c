/* hash.c: see hash.h. */
#include "hash.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#define HASH_CHUNK (1u << 20)

struct sha256_ctx {
	EVP_MD_CTX *md;
};

int sha256_new(sha256_ctx **out)
{
	*out = NULL;
	sha256_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->md = EVP_MD_CTX_new();
	if (!c->md || EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1) {
		sha256_free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

int sha256_update(sha256_ctx *c, const void *data, size_t len)
{
	return EVP_DigestUpdate(c->md, data, len) == 1 ? 0 : -EIO;
}

int sha256_final(sha256_ctx *c, unsigned char out[32])
{
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(c->md, out, &n) != 1 || n != 32)
		return -EIO;
	return EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
}

void sha256_free(sha256_ctx *c)
{
	if (!c)
		return;
	EVP_MD_CTX_free(c->md);
	free(c);
}

int sha256_buf(const void *data, size_t len, unsigned char out[32])
{
	sha256_ctx *c;
	int r = sha256_new(&c);
	if (r == 0)
		r = sha256_update(c, data, len);
	if (r == 0)
		r = sha256_final(c, out);
	sha256_free(c);
	return r;
}

int sha256_fd(int fd, uint64_t size, unsigned char out[32], const volatile sig_atomic_t *cancel,
	      progress_fn progress, void *pctx)
{
	sha256_ctx *c;
	int r = sha256_new(&c);
	if (r < 0)
		return r;
	char *buf = direct_chunk_alloc(HASH_CHUNK);
	if (!buf) {
		sha256_free(c);
		return -ENOMEM;
	}
	bool direct = read_once_begin(fd);
	uint64_t off = 0;
	for (;;) {
		if (cancel && *cancel) {
			r = -ECANCELED;
			break;
		}
		ssize_t n = read_once_chunk(fd, &direct, buf, HASH_CHUNK, (off_t)off);
		if (n < 0) {
			r = (int)n;
			break;
		}
		if (off + (uint64_t)n > size)
			r = -ESTALE;
		else if (n > 0)
			r = sha256_update(c, buf, (size_t)n);
		off += (uint64_t)n;
		if (r == 0 && progress && n > 0)
			progress(pctx, (uint64_t)n);
		if (r < 0 || n < HASH_CHUNK) { /* short: the end of the file */
			r = r ?: off == size ? 0 : -ESTALE;
			break;
		}
	}
	if (r == 0)
		r = sha256_final(c, out);
	free(buf);
	sha256_free(c);
	return r;
}
