/* readback.h: reading a file of a backup back from the store, verified.
 *
 * The one place where the bytes a backup recorded are read back and held against the SHA-256
 * it recorded for them, for every command that hands them out or checks them (verify, export,
 * restore). A content is read from its pack through the store's pack cache (store_pack_cache),
 * in chunks of at most READBACK_CHUNK bytes, in order; each chunk is hashed and then handed to
 * the caller's sink (the tar being written, the temporary file, the Cassandra checksums); at
 * the end the SHA-256 of what was read is compared with the one the caller expects.
 *
 * The caller chooses what it expects: the backup's manifest is the store's word (a catalog
 * row is a cache of it, store_check_file_content binds the two). The sink sees the bytes before
 * they are known to be right: a sink that makes them visible must be able to take them back
 * (a temporary file renamed only after READBACK_OK, a tar that is removed on failure).
 *
 * Nothing here prints. A failure says which step failed (struct readback_result), so the
 * caller can word it, and whether the backup itself is at fault.
 */
#ifndef CASSBACKUP_READBACK_H
#define CASSBACKUP_READBACK_H

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"

#define READBACK_CHUNK (1u << 20)

/* The distinct code for bytes that were read whole but are not the expected ones. */
#define READBACK_EDIFFERS (-EILSEQ)

typedef struct readback readback;
struct store;

/* A reader for one thread over the store's pack cache (made at the first call, shared with
 * every other user of the store), with a hash context and a buffer of its own. cancel (may be
 * NULL): when *cancel becomes non-zero, a read stops before its next chunk with -ECANCELED.
 * 0 or -ENOMEM; *out is the caller's (readback_free). */
int readback_new(struct store *s, const volatile sig_atomic_t *cancel, readback **out);
void readback_free(readback *rb); /* accepts NULL */

/* Takes the next len bytes (len > 0) of the content, in order: 0, or -errno to stop the read
 * (returned as is, READBACK_SINK). data is valid during the call only. */
typedef int (*readback_sink)(void *ctx, const void *data, size_t len);

/* Where a read stopped. */
enum readback_step {
	READBACK_OK,       /* read whole, and its SHA-256 is the expected one */
	READBACK_SOURCE,   /* the source could not be read: a pack, pack_cache_read's code
			    * (pack_cache_strerror words it); a file, -errno, -ESTALE when it
			    * holds fewer bytes than size */
	READBACK_DIFFERS,  /* read whole, but its SHA-256 is not the expected one:
			    * READBACK_EDIFFERS (a sink has had every byte) */
	READBACK_SINK,     /* the sink's code */
	READBACK_CANCELED, /* -ECANCELED */
	READBACK_HASH,     /* the hash could not be computed (-EIO from libcrypto) */
};

struct readback_result {
	enum readback_step step;
	/* The backup itself is at fault, and reading it again will fail the same way: its pack is
	 * missing (-ENOENT), damaged (-EIO: a frame's checksum; -EBADMSG: its seek table), does
	 * not hold the catalog's location (-ERANGE), or its bytes differ (READBACK_DIFFERS). Never
	 * set for a file on disk (readback_fd), nor for a failure of the store's reachability
	 * (-EREMOTEIO: trying again may do). */
	bool damaged;
	uint64_t bytes;           /* handed to the sink */
	unsigned char sha256[32]; /* of what was read, when all of it was (OK, DIFFERS) */
	char why[512];            /* one line, the pack named: "" for READBACK_OK */
};

/* Reads size bytes of a content from the pack loc->pack_path holds it in, from loc->offset in
 * the pack's tar stream, to sink (NULL: none), and holds them against want, the SHA-256 the
 * backup recorded. When that pack is missing before a byte was read (a prune repacked the
 * content since the catalog was read), from where the store holds the content now
 * (store_relocate). 0 (READBACK_OK), or the step's code as above, res saying which. */
int readback_pack(readback *rb, const struct cb_blob_loc *loc, uint64_t size,
		  const unsigned char want[32], readback_sink sink, void *ctx,
		  struct readback_result *res);

/* The same for a copy on disk (a restored file): size bytes of fd from offset 0 (positional
 * reads: fd's offset is left alone). */
int readback_fd(readback *rb, int fd, uint64_t size, const unsigned char want[32],
		readback_sink sink, void *ctx, struct readback_result *res);

#endif
