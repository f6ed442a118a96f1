/* Unit tests of crypt.c and backend_crypt.c: the envelope's sizes, an encrypted backend over
 * a local directory (whole objects, uploads in odd pieces, ranged reads across chunk
 * boundaries, listings in plaintext sizes, a flipped byte failing only the reads that cover
 * it, config and keys/ left plain), and key slots. */
#include "backend_i.h"
#include "check.h"
#include "crypt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK 1024u

static void test_sizes(void)
{
	uint64_t sizes[] = {0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(*sizes); i++) {
		uint64_t p = 99;
		CHECK(crypt_plain_size(crypt_sealed_size(sizes[i], CHUNK), CHUNK, &p) == 0 && p == sizes[i]);
	}
	uint64_t p;
	CHECK(crypt_plain_size(CRYPT_HEADER + CRYPT_TAG - 1, CHUNK, &p) == -EBADMSG);
	/* a full chunk, then a bare tag: no plaintext seals to that */
	CHECK(crypt_plain_size(CRYPT_HEADER + CHUNK + CRYPT_TAG + CRYPT_TAG - 1, CHUNK, &p) == -EBADMSG);
}

static struct crypt_key *fixed_key(unsigned char b)
{
	unsigned char m[CRYPT_KEY_LEN];
	memset(m, b, sizeof(m));
	struct crypt_key *k = NULL;
	CHECK(crypt_key_from_master(m, &k) == 0);
	return k;
}

static unsigned char *pattern(size_t n)
{
	unsigned char *p = malloc(n ? n : 1);
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 31 + i / 251);
	return p;
}

static void upload(struct cb_backend *b, const char *key, const unsigned char *data, size_t n)
{
	struct cb_upload *u;
	CHECK(cb_backend_upload_begin(b, key, n, CB_PUT_EXCLUSIVE, &u) == 0);
	for (size_t at = 0, step = 1; at < n; at += step, step = step * 3 % 1777 + 1)
		CHECK(cb_upload_write(u, data + at, at + step <= n ? step : n - at) == 0);
	CHECK(cb_upload_commit(u) == 0);
	cb_upload_free(u);
}

static int sum_sizes(void *ctx, const char *key, const struct cb_object_info *info)
{
	(void)key;
	*(uint64_t *)ctx += info->size;
	return 0;
}

static void test_backend(const char *root)
{
	struct cb_backend *in, *b;
	CHECK(cb_backend_open(root, 0, NULL, &in) == 0);
	CHECK(cb_backend_crypt(in, fixed_key(7), CHUNK, &b) == 0);
	size_t sizes[] = {0, 5, CHUNK, 5 * CHUNK + 333};
	const char *keys[] = {"packs/aa/a0.tar.zst", "packs/aa/a1.tar.zst", "packs/aa/a2.tar.zst",
			      "packs/aa/a3.tar.zst"};
	uint64_t total = 0;
	for (int i = 0; i < 4; i++) {
		unsigned char *d = pattern(sizes[i]);
		upload(b, keys[i], d, sizes[i]);
		char *got;
		size_t len;
		CHECK(cb_backend_get(b, keys[i], 1 << 20, &got, &len) == 0 && len == sizes[i] &&
		      !memcmp(got, d, len));
		free(got);
		uint64_t st;
		CHECK(cb_backend_stat(b, keys[i], &st) == 0 && st == sizes[i]);
		CHECK(cb_backend_get(in, keys[i], 1 << 20, &got, &len) == 0 &&
		      len == crypt_sealed_size(sizes[i], CHUNK) && !memcmp(got, CRYPT_MAGIC, 8));
		free(got);
		total += sizes[i];
		free(d);
	}
	/* one large write, sealed straight from the caller's buffer in batches */
	size_t big = 40 * CHUNK + 5;
	unsigned char *bd = pattern(big);
	struct cb_upload *u;
	CHECK(cb_backend_upload_begin(b, "packs/bb/big.tar.zst", big, 0, &u) == 0);
	CHECK(cb_upload_write(u, bd, big) == 0 && cb_upload_commit(u) == 0);
	cb_upload_free(u);
	char *bg;
	size_t bl;
	CHECK(cb_backend_get(b, "packs/bb/big.tar.zst", 1 << 20, &bg, &bl) == 0 && bl == big &&
	      !memcmp(bg, bd, big));
	free(bg);
	free(bd);
	total += big;
	uint64_t listed = 0;
	CHECK(cb_backend_list_info(b, "packs/", sum_sizes, &listed) == 0 && listed == total);
	/* ranged reads at and across chunk boundaries */
	size_t n = sizes[3];
	unsigned char *d = pattern(n), buf[4 * CHUNK];
	struct cb_io *io;
	CHECK(cb_backend_open_read(b, keys[3], &io) == 0 && io->size == n);
	uint64_t offs[] = {0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 3, n - 1, n - 400};
	size_t lens[] = {1, 2, 3, CHUNK, CHUNK + 2, 3 * CHUNK + 1};
	for (size_t i = 0; i < sizeof(offs) / sizeof(*offs); i++)
		for (size_t j = 0; j < sizeof(lens) / sizeof(*lens); j++) {
			size_t want = offs[i] + lens[j] <= n ? lens[j] : n - offs[i];
			CHECK(cb_io_pread(io, buf, lens[j], offs[i]) == (ssize_t)want &&
			      !memcmp(buf, d + offs[i], want));
		}
	CHECK(cb_io_pread(io, buf, 10, n) == 0);
	cb_io_close(io);
	/* one flipped byte in chunk 2: reads of chunk 2 fail as damage (-EBADMSG, which the pack
	 * reader takes for a corrupt frame, not -EIO, a failed read), others do not */
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", root, keys[3]);
	int fd = open(path, O_RDWR);
	unsigned char c;
	off_t at = CRYPT_HEADER + 2 * (CHUNK + CRYPT_TAG) + 100;
	CHECK(fd >= 0 && pread(fd, &c, 1, at) == 1);
	c ^= 0x10;
	CHECK(pwrite(fd, &c, 1, at) == 1);
	close(fd);
	CHECK(cb_backend_open_read(b, keys[3], &io) == 0);
	CHECK(cb_io_pread(io, buf, CHUNK, 0) == CHUNK && !memcmp(buf, d, CHUNK));
	CHECK(cb_io_pread(io, buf, 10, 2 * CHUNK + 500) == -EBADMSG);
	CHECK(cb_io_pread(io, buf, CHUNK + 2, CHUNK + 10) == -EBADMSG);
	CHECK(cb_io_pread(io, buf, 10, 3 * CHUNK) == 10 && !memcmp(buf, d + 3 * CHUNK, 10));
	cb_io_close(io);
	char *got;
	size_t len;
	CHECK(cb_backend_get(b, keys[3], 1 << 20, &got, &len) == -EBADMSG);
	free(d);
	/* config and keys/ stay plain */
	CHECK(cb_backend_put(b, "keys/k.json", "{}", 2, 0) == 0);
	CHECK(cb_backend_get(in, "keys/k.json", 100, &got, &len) == 0 && len == 2 && !memcmp(got, "{}", 2));
	free(got);
	/* another key opens nothing */
	struct cb_backend *in2, *b2;
	CHECK(cb_backend_open(root, 0, NULL, &in2) == 0);
	CHECK(cb_backend_crypt(in2, fixed_key(8), CHUNK, &b2) == 0);
	CHECK(cb_backend_get(b2, keys[1], 1 << 20, &got, &len) == -EBADMSG);
	cb_backend_close(b2);
	cb_backend_close(b);
}

static void test_slots(void)
{
	setenv("CASSBACKUP_TEST_SCRYPT_N", "1024", 1);
	struct crypt_key *k = fixed_key(3), *o = NULL;
	struct crypt_secret *s = crypt_secret_new(40), *w = crypt_secret_new(40);
	memset(s->p, 'a', 40);
	memset(w->p, 'b', 40);
	const char *id = "0123456789abcdef0123456789abcdef";
	for (int kind = CRYPT_SLOT_FILE; kind <= CRYPT_SLOT_PASSPHRASE; kind++) {
		struct strbuf doc = {0};
		char err[160], f1[17], f2[17];
		CHECK(crypt_slot_make(k, id, 16384, (enum crypt_slot_kind)kind, s, &doc) == 0);
		CHECK(strstr(doc.buf, "\"store\": \"0123456789abcdef0123456789abcdef\"") != NULL);
		CHECK(crypt_slot_open(doc.buf, doc.len, id, 16384, s, &o, err, sizeof(err)) == 0);
		crypt_key_fingerprint(k, f1);
		if (o) {
			crypt_key_fingerprint(o, f2);
			CHECK(!strcmp(f1, f2));
		}
		crypt_key_free(o);
		o = NULL;
		CHECK(crypt_slot_open(doc.buf, doc.len, id, 16384, w, &o, err, sizeof(err)) == -EKEYREJECTED);
		CHECK(crypt_slot_open(doc.buf, doc.len, "ffffffffffffffffffffffffffffffff", 16384, s, &o,
				      err, sizeof(err)) == -EKEYREJECTED);
		CHECK(crypt_slot_open(doc.buf, doc.len - 5, id, 16384, s, &o, err, sizeof(err)) == -EBADMSG);
		/* the config's chunk size changed since (one bit): the key opens, the config is wrong */
		CHECK(crypt_slot_open(doc.buf, doc.len, id, 16385, s, &o, err, sizeof(err)) == -EUCLEAN);
		CHECK(o == NULL && strstr(err, "config") != NULL);
		sb_free(&doc);
	}
	crypt_secret_free(s);
	crypt_secret_free(w);
	crypt_key_free(k);
}

int main(void)
{
	char root[] = "/tmp/cb-test-crypt-XXXXXX";
	if (!mkdtemp(root))
		return 1;
	test_sizes();
	test_backend(root);
	test_slots();
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		failures++;
	if (failures)
		fprintf(stderr, "%d failures\n", failures);
	return failures ? 1 : 0;
}
