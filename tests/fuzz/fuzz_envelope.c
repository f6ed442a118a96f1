/* libFuzzer target: the envelope of an encrypted store's objects (crypt.h). Input starting
 * with 'S': the rest is sealed and opened again, which must give it back, and must fail with
 * any one byte of the sealed object changed. Otherwise: the input is opened as a sealed
 * object, which must fail (it was not sealed with this key) without reading out of bounds. */
#include "crypt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define NAME "packs/ab/abababababababababababababababab.tar.zst"

static struct crypt_key *key(void)
{
	static struct crypt_key *k;
	unsigned char master[CRYPT_KEY_LEN];
	memset(master, 0x42, sizeof(master));
	if (!k && crypt_key_from_master(master, &k) < 0)
		abort();
	return k;
}

static void round_trip(const unsigned char *data, size_t size)
{
	uint32_t chunk = CRYPT_MIN_CHUNK;
	unsigned char *sealed;
	size_t slen, plen;
	char *plain;
	if (crypt_seal_buf(key(), NAME, chunk, data, size, &sealed, &slen) < 0)
		abort();
	uint64_t p;
	if (slen != crypt_sealed_size(size, chunk) || crypt_plain_size(slen, chunk, &p) < 0 || p != size)
		abort();
	if (crypt_open_buf(key(), NAME, chunk, sealed, slen, &plain, &plen) < 0 || plen != size ||
	    memcmp(plain, data, size))
		abort();
	free(plain);
	size_t at = size ? data[0] * 7919u % slen : slen / 2;
	sealed[at] ^= 1;
	if (crypt_open_buf(key(), NAME, chunk, sealed, slen, &plain, &plen) != -EBADMSG)
		abort();
	sealed[at] ^= 1;
	if (slen > CRYPT_HEADER + CRYPT_TAG + chunk && /* cut at a chunk boundary */
	    crypt_open_buf(key(), NAME, chunk, sealed, CRYPT_HEADER + chunk + CRYPT_TAG, &plain, &plen) != -EBADMSG)
		abort();
	if (crypt_open_buf(key(), "packs/ab/other.tar.zst", chunk, sealed, slen, &plain, &plen) != -EBADMSG)
		abort();
	free(sealed);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	if (size && data[0] == 'S') {
		round_trip(data + 1, size - 1);
		return 0;
	}
	char *plain;
	size_t plen;
	int r = crypt_open_buf(key(), NAME, CRYPT_MIN_CHUNK, data, size, &plain, &plen);
	if (r != -EBADMSG)
		abort();
	return 0;
}
