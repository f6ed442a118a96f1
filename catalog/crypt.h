/* crypt.h: client-side encryption of a store: its keys, key slots and the envelope every
 * object but `config` and `keys/` is sealed in (backend_crypt.c applies it below the store).
 *
 * Keys. A store's master key is 32 random bytes made by init. It never leaves memory
 * unwrapped: each key slot (keys/ID.json) holds it sealed with AES-256-GCM under a key derived
 * from what the operator holds (a key file through HMAC-SHA256, a passphrase through scrypt),
 * so slots can be added and removed without rewriting anything else. From the master key:
 *   data key = HMAC-SHA256(master, "cassbackup data key v1")
 * and for each object, from the random salt in its header:
 *   object key = HMAC-SHA256(data key, "cassbackup object v1" || salt)
 *
 * Envelope (doc/format.md "Encrypted stores"):
 *   header: "CBENC1\0\0" | salt[24]                                      (CRYPT_HEADER bytes)
 *   then the plaintext cut in chunks of `chunk` bytes (the last may be shorter; an empty
 *   object is one empty chunk), each sealed with AES-256-GCM under the object key:
 *     nonce = 0^4 | u64 big-endian chunk number
 *     AAD   = u8 final | u64 little-endian chunk number | the object's key in the store
 *     ciphertext | 16-byte tag
 * So a chunk read alone is authenticated (reads stay ranged: the mount fetches only the chunks
 * of the frames it decodes), a chunk moved within the object fails (its number), a chunk or an
 * object moved to another key fails (the key, the salt), and an object cut short at a chunk
 * boundary fails (its last chunk is not marked final). Any flipped bit is an error, never
 * other bytes.
 *
 * Key material lives in pages locked in memory (mlock, where allowed) and left out of core
 * dumps (MADV_DONTDUMP), and is wiped (OPENSSL_cleanse) when freed.
 */
#ifndef CASSBACKUP_CRYPT_H
#define CASSBACKUP_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define CRYPT_KEY_LEN 32
#define CRYPT_HEADER 32
#define CRYPT_SALT 24
#define CRYPT_TAG 16
#define CRYPT_MAGIC "CBENC1\0\0"
#define CRYPT_DEFAULT_CHUNK 16384u
#define CRYPT_MIN_CHUNK 1024u
#define CRYPT_MAX_CHUNK (1u << 20)
#define CRYPT_CIPHER_NAME "AES-256-GCM"
#define CRYPT_KEYFILE_MAX 4096
#define CRYPT_KEYFILE_MIN 32
#define CRYPT_PASSPHRASE_MAX 1024
#define CRYPT_SLOT_MAX 4096 /* bytes of a key slot document at most */

/* --- secrets in locked memory --------------------------------------------------------------- */

/* A buffer of len bytes (at most 8 KiB) on pages of its own, locked and left out of core
 * dumps; wiped and unmapped by crypt_secret_free. NULL when out of memory. */
struct crypt_secret {
	unsigned char *p;
	size_t len;
};
struct crypt_secret *crypt_secret_new(size_t len);
void crypt_secret_free(struct crypt_secret *s); /* accepts NULL */

/* A store's keys, unwrapped: the master key and the data key derived from it. */
struct crypt_key;
/* A new random master key. -ENOMEM, -EIO. */
int crypt_key_new(struct crypt_key **out);
/* The key for master (CRYPT_KEY_LEN bytes). */
int crypt_key_from_master(const unsigned char *master, struct crypt_key **out);
void crypt_key_free(struct crypt_key *k); /* accepts NULL */
/* A short, non-secret fingerprint of the master key (16 hex digits + NUL), to tell keys apart
 * in `key list` and messages: HMAC-SHA256(master, "cassbackup key id") truncated. */
void crypt_key_fingerprint(const struct crypt_key *k, char out[17]);

/* --- key files ---------------------------------------------------------------------------- */

/* Reads the key file at path into *out (the secret: its bytes, a final newline dropped).
 * Refused with one line in err: a file others than its owner may read or write (mode & 077:
 * "chmod 600"), one owned by another user than the caller or root (who could have chosen the
 * key), not a regular file, shorter than CRYPT_KEYFILE_MIN or longer than CRYPT_KEYFILE_MAX
 * bytes: -EINVAL; or -errno. */
int crypt_keyfile_read(const char *path, struct crypt_secret **out, struct strbuf *err);

/* crypt_keyfile_read for any secret in a file (what: "key file", "passphrase file"), at
 * least min bytes (a final newline dropped). */
int crypt_secret_file_read(const char *path, const char *what, size_t min,
			   struct crypt_secret **out, struct strbuf *err);
#define CRYPT_PASSPHRASE_MIN 8

/* Creates a new key file at path (which must not exist: -EEXIST), mode 0600: 64 random hex
 * digits and a newline, written and fsynced before it is linked in. -errno with err. */
int crypt_keyfile_create(const char *path, struct strbuf *err);

/* --- key slots (keys/ID.json) ------------------------------------------------------------- */

enum crypt_slot_kind { CRYPT_SLOT_FILE, CRYPT_SLOT_PASSPHRASE };

/* scrypt's cost for new passphrase slots: N = 2^15, r = 8, p = 1 (32 MiB, a fraction of a
 * second); CASSBACKUP_TEST_SCRYPT_N (a power of two) lowers N for tests. */
#define CRYPT_SCRYPT_N (1u << 15)
#define CRYPT_SCRYPT_R 8u
#define CRYPT_SCRYPT_P 1u
#define CRYPT_SCRYPT_MAXMEM (UINT64_C(256) << 20)

/* Appends to doc a key slot for store store_id, whose objects are sealed in chunks of chunk
 * bytes, holding k's master key, wrapped under the key secret gives (a key file's bytes, or a
 * passphrase): JSON
 *   {"format": 1, "kind": "file"|"passphrase", "created_ns": N, "host": H,
 *    "kdf": {"name": "hmac-sha256"} | {"name": "scrypt", "N": n, "r": r, "p": p},
 *    "salt": HEX32, "nonce": HEX12, "wrapped": HEX48, "store": ID, "config_mac": HEX32}
 * wrapped = AES-256-GCM(master) with AAD "cassbackup key slot v1" | store id | kind.
 * store: the store id the slot was made for, to name a config whose id changed since;
 * config_mac = HMAC-SHA256(master, "cassbackup config v1" | store id | 0 | chunk as u32 LE),
 * which binds the config's unauthenticated settings to the key (slots made before it lack both
 * and are opened as before). */
int crypt_slot_make(const struct crypt_key *k, const char *store_id, uint32_t chunk,
		    enum crypt_slot_kind kind, const struct crypt_secret *secret, struct strbuf *doc);

/* What a slot says of itself, without opening it. */
struct crypt_slot_info {
	enum crypt_slot_kind kind;
	int64_t created_ns;
	char host[256];
	uint64_t n, r, p; /* scrypt's, for a passphrase slot */
	char store[65];   /* the store id it was made for; "" in a slot from before it said */
	bool bound;       /* it has a config_mac: the config's settings are bound to the key (a
			   * slot from before has none, and does not notice a damaged config) */
};

/* Parses a slot document (len bytes) and checks every field: -EBADMSG with err naming what
 * is wrong. info may be NULL. */
int crypt_slot_parse(const char *doc, size_t len, struct crypt_slot_info *info, char *err,
		     size_t errlen);

/* Opens a slot with secret for store store_id sealed in chunks of chunk bytes (its config's
 * word): *out gets the store's keys (the caller's). -EKEYREJECTED when the secret is not this
 * slot's (or the slot is another store's), -EBADMSG for a malformed slot, -EUCLEAN when the
 * slot opens but its config_mac says the config's settings are not those it was made for (the
 * config is damaged or was replaced: err says so), -ENOMEM. */
int crypt_slot_open(const char *doc, size_t len, const char *store_id, uint32_t chunk,
		    const struct crypt_secret *secret, struct crypt_key **out, char *err,
		    size_t errlen);

/* --- the envelope --------------------------------------------------------------------------- */

/* Bytes an object of plain bytes takes sealed. */
uint64_t crypt_sealed_size(uint64_t plain, uint32_t chunk);
/* The plaintext size of a sealed object of `sealed` bytes: -EBADMSG when no plaintext seals
 * to that size (a cut or padded object). */
int crypt_plain_size(uint64_t sealed, uint32_t chunk, uint64_t *plain);

/* One object's sealing state: its key (from the salt) and name. Reading is thread-safe
 * (crypt_obj_open makes its own cipher context); sealing (crypt_obj_seal) is for one thread. */
struct crypt_obj;
/* For a new object named name: a fresh salt; *out's header (crypt_obj_header) goes first. */
int crypt_obj_new(const struct crypt_key *k, const char *name, uint32_t chunk,
		  struct crypt_obj **out);
/* For the object named name whose header is hdr (CRYPT_HEADER bytes): -EBADMSG when hdr is
 * not an envelope's header. */
int crypt_obj_load(const struct crypt_key *k, const char *name, uint32_t chunk,
		   const unsigned char *hdr, struct crypt_obj **out);
void crypt_obj_free(struct crypt_obj *o); /* accepts NULL */
const unsigned char *crypt_obj_header(const struct crypt_obj *o);

/* Seals chunk number idx (len <= chunk bytes of in; final: the object's last) into out
 * (len + CRYPT_TAG bytes). -EIO when the cipher fails. */
int crypt_obj_seal(struct crypt_obj *o, uint64_t idx, bool final, const void *in, size_t len,
		   void *out);

/* Opens the sealed chunks first, first + 1, ... held in in (inlen bytes: whole sealed chunks,
 * the last possibly shorter when it is the object's last), of an object of nchunks chunks,
 * into out (room for their plaintext). *outlen gets the plaintext bytes. -EBADMSG when any
 * chunk fails authentication (nothing in out may then be used). */
int crypt_obj_open(const struct crypt_obj *o, uint64_t first, uint64_t nchunks, const void *in,
		   size_t inlen, void *out, size_t *outlen);

/* Opens one sealed chunk, number idx of an object of nchunks (n bytes at in, tag included)
 * into out (n - CRYPT_TAG bytes), with the caller's cipher context c (crypt_ctx_new; one
 * thread's). -EBADMSG when it fails authentication. */
void *crypt_ctx_new(const struct crypt_obj *o); /* NULL: out of memory */
void crypt_ctx_free(void *c);
int crypt_obj_open_one(const struct crypt_obj *o, void *c, uint64_t idx, uint64_t nchunks,
		       const void *in, size_t n, void *out);

/* Number of chunks of an object of plain bytes. */
static inline uint64_t crypt_nchunks(uint64_t plain, uint32_t chunk)
{
	return plain == 0 ? 1 : (plain + chunk - 1) / chunk;
}

/* Seals a whole object (plain, len) named name into *out (malloc'd, *outlen bytes). */
int crypt_seal_buf(const struct crypt_key *k, const char *name, uint32_t chunk, const void *plain,
		   size_t len, unsigned char **out, size_t *outlen);
/* Opens a whole sealed object: *out malloc'd, NUL-terminated, *outlen plaintext bytes.
 * -EBADMSG when it is not an envelope or fails authentication. */
int crypt_open_buf(const struct crypt_key *k, const char *name, uint32_t chunk, const void *sealed,
		   size_t len, char **out, size_t *outlen);

#endif
