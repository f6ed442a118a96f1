/* libFuzzer target: a pack's .cassbackup/index.json as read from a store. Accepted indexes
 * survive a write and a second parse with the same blobs. */
#include "manifest.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char err[256] = "";
	struct pack_index pi, again;
	if (pack_index_parse((const char *)data, size, &pi, err, sizeof(err)) < 0) {
		if (!err[0])
			abort();
		return 0;
	}
	struct strbuf sb = {0};
	if (pack_index_write(&pi, &sb) < 0 ||
	    pack_index_parse(sb.buf, sb.len, &again, err, sizeof(err)) < 0 ||
	    again.nblobs != pi.nblobs ||
	    (pi.nblobs && memcmp(again.blobs, pi.blobs, pi.nblobs * sizeof(*pi.blobs)) != 0))
		abort();
	pack_index_free(&again);
	pack_index_free(&pi);
	sb_free(&sb);
	return 0;
}
