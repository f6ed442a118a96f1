/* Unit tests for catalog/hash.c: known digests, files of every size, and a context that
 * cannot be made. */
#include "hash.h"
#include "util.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* sha256_fd of a file of size bytes of data, announced as announced. */
static int hash_file(const unsigned char *data, size_t size, uint64_t announced, unsigned char out[32])
{
	char path[] = "/tmp/cb-hash-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0 && write_full(fd, data, size) == 0);
	int r = sha256_fd(fd, announced, out, NULL, NULL, NULL);
	close(fd);
	unlink(path);
	return r;
}

/* sha256_fd reads with O_DIRECT where it can: every size around a block and its 1 MiB chunk
 * hashes as in memory, one byte more or less than announced is -ESTALE; and a file its file
 * system reads only through the page cache (procfs) hashes the same way. */
static void test_fd(void)
{
	static const size_t sizes[] = {0, 1, 4095, 4096, 4097, (1u << 20) - 1, 1u << 20,
				       (1u << 20) + 1, (2u << 20) + 5};
	size_t most = (2u << 20) + 6;
	unsigned char *data = malloc(most), d[32], want[32];
	for (size_t i = 0; i < most; i++)
		data[i] = (unsigned char)(i * 2654435761u >> 13);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		CHECK(sha256_buf(data, sizes[i], want) == 0);
		CHECK(hash_file(data, sizes[i], sizes[i], d) == 0 && !memcmp(d, want, 32));
		CHECK(hash_file(data, sizes[i], sizes[i] + 1, d) == -ESTALE);
		CHECK(sizes[i] == 0 || hash_file(data, sizes[i], sizes[i] - 1, d) == -ESTALE);
	}
	free(data);
	char cmdline[4096];
	int fd = open("/proc/self/cmdline", O_RDONLY);
	ssize_t n = fd >= 0 ? pread_full(fd, cmdline, sizeof(cmdline), 0) : -1;
	CHECK(n > 0 && sha256_buf(cmdline, (size_t)n, want) == 0);
	CHECK(n > 0 && sha256_fd(fd, (uint64_t)n, d, NULL, NULL, NULL) == 0 && !memcmp(d, want, 32));
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	test_fd();
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
