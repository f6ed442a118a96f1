/* libFuzzer target: a key slot (keys/ID.json) as read from a store: parsed, then opened with
 * a fixed secret, which must reject it (or, for a slot that secret made, open it). */
#include "crypt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char err[256] = "";
	struct crypt_slot_info info;
	int r = crypt_slot_parse((const char *)data, size, &info, err, sizeof(err));
	if (r < 0 && (r != -EBADMSG || !err[0]))
		abort();
	/* opening costs a KDF: a passphrase slot's only while scrypt is cheap */
	if (r < 0 || (info.kind == CRYPT_SLOT_PASSPHRASE && info.n > 1024))
		return 0;
	struct crypt_secret *s = crypt_secret_new(40);
	if (!s)
		abort();
	memset(s->p, 'k', s->len);
	struct crypt_key *k = NULL;
	r = crypt_slot_open((const char *)data, size, "0123456789abcdef0123456789abcdef", 16384, s,
			    &k, err, sizeof(err));
	if (r != 0 && r != -EKEYREJECTED && r != -EUCLEAN)
		abort();
	crypt_key_free(k);
	crypt_secret_free(s);
	return 0;
}
