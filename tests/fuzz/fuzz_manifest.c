/* libFuzzer target: a backup manifest (STORE/backups/NAME.json) as read from a store.
 * Property: parsing never crashes or leaks, a rejected document says why, and whatever is
 * accepted is written back and parsed again to the same structure; the states its tables
 * record of backups/ directories (tools/taken.h) parse, or are refused, and are judged
 * without crashing. */
#include "manifest.h"
#include "taken.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* Each record's states round-trip through taken_format, and judging them does not crash. */
static void judge_links(const struct manifest *m)
{
	struct links_taken none = {0}, t;
	for (size_t k = 0; k < m->nkeyspaces; k++)
		for (size_t i = 0; i < m->keyspaces[k].ntables; i++) {
			const struct manifest_table *mt = &m->keyspaces[k].tables[i];
			for (size_t l = 0; l < mt->nlinks; l++) {
				const struct manifest_links *rec = &mt->links[l];
				if (taken_record(mt->links, mt->nlinks, rec->dir) == NULL)
					abort();
				(void)taken_judge(rec, &none);
				if (taken_parse(rec->left, &t) < 0)
					continue;
				struct strbuf sb = {0};
				struct links_taken back;
				if (taken_format(&t, &sb) < 0 || taken_parse(sb.buf, &back) < 0 ||
				    !taken_same(&t, &back) || taken_judge(rec, &t) != TAKEN_AS_LEFT)
					abort();
				sb_free(&sb);
			}
		}
}

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
	judge_links(m);
	manifest_free(again);
	manifest_free(m);
	sb_free(&sb);
	return 0;
}
