/* Unit tests for catalog/hash.c: known digests, and a context that cannot be made. */
#include "hash.h"
#include "util.h"

#include <dlfcn.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

/* hash.c's EVP_MD_CTX_new: libcrypto's, or NULL (as when memory runs out) while fail_new. */
static bool fail_new;
EVP_MD_CTX *EVP_MD_CTX_new(void)
{
	if (fail_new)
		return NULL;
	EVP_MD_CTX *(*real)(void) = (EVP_MD_CTX * (*)(void)) dlsym(RTLD_NEXT, "EVP_MD_CTX_new");
	return real ? real() : NULL;
}

int main(void)
{
	unsigned char d[32];
	char hex[65];
	CHECK(sha256_buf("abc", 3, d) == 0);
	hex_encode(d, 32, hex);
	CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));

	fail_new = true;
	sha256_ctx *c = (sha256_ctx *)&d; /* whatever the caller's variable held before */
	CHECK(sha256_new(&c) == -ENOMEM);
	CHECK(c == NULL);
	sha256_free(c); /* safe after a failed sha256_new */
	CHECK(sha256_buf("abc", 3, d) == -ENOMEM); /* frees nothing it did not allocate */
	fail_new = false;
	CHECK(sha256_buf("abc", 3, d) == 0);

	if (failures) {
		fprintf(stderr, "test_hash: %d checks failed\n", failures);
		return 1;
	}
	printf("test_hash: all checks passed\n");
	return 0;
}
