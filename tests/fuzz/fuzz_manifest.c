/* libFuzzer target: a backup manifest (STORE/backups/NAME.json) as read from a store.
 * Property: parsing never crashes or leaks, a rejected document says why, and whatever is
 * accepted is written back and parsed again to the same structure. */
#include "manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char err[256] = "";
	struct manifest *m = NULL;
	int r = manifest_parse((const char *)data, size, &m, err, sizeof(err));
	if (r < 0) {
		if (!err[0])
			abort(); /* every refusal names its reason */
		return 0;
	}
	struct strbuf sb = {0};
	struct manifest *again = NULL;
	if (manifest_write(m, &sb, err, sizeof(err)) < 0 ||
	    manifest_parse(sb.buf, sb.len, &again, err, sizeof(err)) < 0 ||
	    again->nkeyspaces != m->nkeyspaces || again->files != m->files ||
	    strcmp(again->name, m->name) != 0)
		abort();
	manifest_free(again);
	manifest_free(m);
	sb_free(&sb);
	return 0;
}
