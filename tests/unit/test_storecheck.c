/* Unit tests for the store check (storecheck.c) on real packs written by the store's writer: a
 * whole store, a damaged frame (found only when the data is read), a missing pack, the
 * deterministic subset of packs to read, a cancel and a finding the caller could not keep. */
#include "storecheck.h"
#include "packread.h"
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "storefix.h"

#define BIG (600u << 10)
#define SMALL 3000

static unsigned char big[BIG], other[BIG], small[SMALL];
static char root[64], dir[128];

struct findings {
	char *problems[32], *info[32];
	size_t np, ni;
	bool fail; /* refuse every finding */
};

static int keep(void *ctx, enum storecheck_finding kind, const char *line)
{
	struct findings *f = ctx;
	if (f->fail)
		return -ENOMEM;
	char **v = kind == STORECHECK_PROBLEM ? f->problems : f->info;
	size_t *n = kind == STORECHECK_PROBLEM ? &f->np : &f->ni;
	if (*n < 32)
		v[(*n)++] = strdup(line);
	return 0;
}

static void findings_free(struct findings *f)
{
	for (size_t i = 0; i < f->np; i++)
		free(f->problems[i]);
	for (size_t i = 0; i < f->ni; i++)
		free(f->info[i]);
	*f = (struct findings){0};
}

/* The first line of v[0 .. n) holding both a and b, or NULL. */
static const char *line_with(char *const *v, size_t n, const char *a, const char *b)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] && strstr(v[i], a) && (!b || strstr(v[i], b)))
			return v[i];
	return NULL;
}

/* Two backups: day2 shares the big file with day1 and brings a file of its own. */
static void make_store(void)
{
	CHECK(fix_store(root) == 0);
	snprintf(dir, sizeof(dir), "%s/s", root);
	struct fix_file d1[] = {{"nb-1-big-Data.db", big, BIG}, {"nb-1-big-Digest.crc32", small, SMALL}};
	struct fix_file d2[] = {{"nb-1-big-Data.db", big, BIG}, {"nb-2-big-Data.db", other, BIG}};
	CHECK(fix_backup(dir, "day1", d1, 2) == 0);
	CHECK(fix_backup(dir, "day2", d2, 2) == 0);
}

/* Runs the check on the store as it is, as `cassbackup check` opens it. */
static int run(enum storecheck_read read, const volatile sig_atomic_t *cancel,
	       struct findings *f, struct storecheck_stats *st, struct strbuf *err)
{
	struct store *s = NULL;
	struct store_options so = {.flags = STORE_NO_RECONCILE};
	struct strbuf oerr = {0};
	int r = store_open(dir, &so, &s, &oerr);
	CHECK(r == 0);
	sb_free(&oerr);
	if (r < 0)
		return r;
	struct storecheck_opts o = {.read = {.kind = read}, .cancel = cancel, .finding = keep, .ctx = f};
	r = storecheck_run(s, &o, st, err);
	store_close(s);
	return r;
}

static void locate(const void *data, size_t size, struct cb_blob_loc *loc)
{
	struct store *s = NULL;
	struct strbuf err = {0};
	unsigned char sha[32];
	CHECK(store_open(dir, NULL, &s, &err) == 0);
	CHECK(s && fix_locate(s, data, size, sha, loc) == 0);
	store_close(s);
	sb_free(&err);
}

static void test_whole(void)
{
	make_store();
	struct findings f = {0};
	struct storecheck_stats st;
	struct strbuf err = {0};
	CHECK(run(STORECHECK_READ_NONE, NULL, &f, &st, &err) == 0);
	CHECK(f.np == 0 && st.problems == 0 && st.backups == 2 && st.blobs == 3);
	CHECK(st.packs >= 1 && st.packs_read == 0 && st.bytes_read == 0);
	CHECK(st.bytes == 3 * (uint64_t)BIG + SMALL && st.blob_bytes == 2 * (uint64_t)BIG + SMALL);
	CHECK(st.unused_blobs == 0 && st.stale_locks == 0);
	findings_free(&f);
	CHECK(run(STORECHECK_READ_ALL, NULL, &f, &st, &err) == 0);
	CHECK(f.np == 0 && st.problems == 0 && st.packs_read == st.packs);
	CHECK(st.bytes_read >= 2 * (uint64_t)BIG + SMALL);
	findings_free(&f);
	CHECK(!err.len);
	sb_free(&err);
	fix_remove(root);
}

/* A flipped byte in a frame of the shared file: the packs' structure is sound, so only reading
 * the data finds it, naming the pack, the blob and both backups that need it. */
static void test_damaged_frame(void)
{
	make_store();
	struct cb_blob_loc loc;
	locate(big, BIG, &loc);
	CHECK(fix_damage_frame(fix_pack_file(dir, &loc), loc.offset + 1000) == 0);
	struct findings f = {0};
	struct storecheck_stats st;
	struct strbuf err = {0};
	CHECK(run(STORECHECK_READ_NONE, NULL, &f, &st, &err) == 0);
	CHECK(f.np == 0);
	findings_free(&f);
	CHECK(run(STORECHECK_READ_ALL, NULL, &f, &st, &err) == 0);
	CHECK(st.problems == f.np && f.np == 3);
	char hex[65];
	hex_encode(loc.sha256, 32, hex);
	hex[16] = '\0';
	CHECK(line_with(f.problems, f.np, loc.pack_path, hex));
	CHECK(line_with(f.problems, f.np, loc.pack_path, pack_cache_strerror(-EIO)));
	CHECK(line_with(f.problems, f.np, "backup day1/n1: shop/orders/nb-1-big-Data.db: its bytes are "
			"damaged in ", loc.pack_path));
	CHECK(line_with(f.problems, f.np, "backup day2/n1: shop/orders/nb-1-big-Data.db: its bytes are "
			"damaged in ", loc.pack_path));
	findings_free(&f);
	sb_free(&err);
	fix_remove(root);
}

/* A pack gone: the catalog is brought up to date (information), and every file whose bytes
 * were in it is a problem. */
static void test_missing_pack(void)
{
	make_store();
	struct cb_blob_loc loc;
	locate(other, BIG, &loc); /* day2's own file: in a pack of day2's */
	CHECK(unlink(fix_pack_file(dir, &loc)) == 0);
	struct findings f = {0};
	struct storecheck_stats st;
	struct strbuf err = {0};
	CHECK(run(STORECHECK_READ_NONE, NULL, &f, &st, &err) == 0);
	CHECK(f.np >= 1 && st.problems == f.np);
	CHECK(line_with(f.problems, f.np, "backup day2/n1: shop/orders/nb-2-big-Data.db: its bytes",
			"are in no intact pack's index"));
	CHECK(!line_with(f.problems, f.np, "backup day1", NULL));
	CHECK(line_with(f.info, f.ni, "catalog.db was behind the store", "dropped 0 backup(s) and 1 pack(s)"));
	findings_free(&f);
	sb_free(&err);
	fix_remove(root);
}

static unsigned count_selected(const struct storecheck_subset *s, const char *const *keys, size_t n, bool *sel)
{
	CHECK(storecheck_select(s, keys, n, sel) == 0);
	unsigned k = 0;
	for (size_t i = 0; i < n; i++)
		k += sel[i];
	return k;
}

/* "n of M" reads every pack exactly once over the M parts; a share of 1 reads every pack; a
 * share reads that share of the packs rounded up, at least one, and seeds drawn anew come to
 * read every pack (a choice by pack number alone read the same lowest ones every week);
 * nothing read without a subset. */
static void test_subset(void)
{
	const char *keys[] = {
		"packs/00/00000000aaaabbbbccccddddeeeeffff.tar.zst",
		"packs/7f/7fffffff0123456789abcdef01234567.tar.zst",
		"packs/ff/ffffffff0123456789abcdef01234567.tar.zst",
		"packs/12/12345678.tar.zst",
		"packs/ab/abc.tar.zst", /* not named by its id: the SHA-256 of its key */
	};
	enum { N = ARRAY_SIZE(keys) };
	bool sel[N];
	unsigned parts[N] = {0};
	for (uint64_t m = 1; m <= 7; m++) {
		memset(parts, 0, sizeof(parts));
		for (uint64_t n = 1; n <= m; n++) {
			struct storecheck_subset s = {.kind = STORECHECK_READ_NTH, .n = n, .m = m};
			CHECK(storecheck_select(&s, keys, N, sel) == 0);
			for (size_t i = 0; i < N; i++)
				parts[i] += sel[i];
		}
		for (size_t i = 0; i < N; i++)
			CHECK(parts[i] == 1);
	}
	struct storecheck_subset all = {.kind = STORECHECK_READ_SHARE, .share = 1.0};
	CHECK(count_selected(&all, keys, N, sel) == N);
	struct storecheck_subset none = {.kind = STORECHECK_READ_NONE};
	CHECK(count_selected(&none, keys, N, sel) == 0);
	/* part 1 of 2 holds the even numbers */
	struct storecheck_subset first = {.kind = STORECHECK_READ_NTH, .n = 1, .m = 2};
	CHECK(storecheck_select(&first, keys, N, sel) == 0 && sel[0] && !sel[1]);

	struct storecheck_subset tenth = {.kind = STORECHECK_READ_SHARE, .share = 0.1};
	CHECK(count_selected(&tenth, keys, N, sel) == 1);     /* 0.5 rounded up */
	CHECK(count_selected(&tenth, keys, 0, sel) == 0);     /* an empty store */
	struct storecheck_subset share = {.kind = STORECHECK_READ_SHARE, .share = 0.41};
	CHECK(count_selected(&share, keys, N, sel) == 3);     /* 2.05 rounded up */
	const char *many[25];
	char names[25][64];
	for (size_t i = 0; i < 25; i++) {
		snprintf(names[i], sizeof(names[i]), "packs/%02zx/%02zx000000000000000000000000000000.tar.zst", i, i);
		many[i] = names[i];
	}
	bool sel25[25];
	struct storecheck_subset p28 = {.kind = STORECHECK_READ_SHARE, .share = 0.28}; /* 7, not 8 */
	CHECK(count_selected(&p28, many, 25, sel25) == 7);
	bool again[N];
	CHECK(storecheck_select(&share, keys, N, again) == 0 && !memcmp(sel, again, sizeof(sel)));
	memset(parts, 0, sizeof(parts));
	for (tenth.seed = 1; tenth.seed <= 200; tenth.seed++) {
		CHECK(count_selected(&tenth, keys, N, sel) == 1);
		for (size_t i = 0; i < N; i++)
			parts[i] += sel[i];
	}
	for (size_t i = 0; i < N; i++) /* each about 40 times in 200 */
		CHECK(parts[i] >= 10);
}

/* A cancel stops the walk with -ECANCELED and says so; a finding the caller could not keep
 * fails the check at its end rather than let it pass with a problem lost. */
static void test_cancel_and_lost_finding(void)
{
	make_store();
	struct findings f = {0};
	struct storecheck_stats st;
	struct strbuf err = {0};
	volatile sig_atomic_t cancel = 1;
	CHECK(run(STORECHECK_READ_ALL, &cancel, &f, &st, &err) == -ECANCELED);
	CHECK(err.buf && !strcmp(err.buf, "interrupted"));
	findings_free(&f);
	err.len = 0;
	struct cb_blob_loc loc;
	locate(small, SMALL, &loc);
	CHECK(unlink(fix_pack_file(dir, &loc)) == 0);
	f.fail = true;
	CHECK(run(STORECHECK_READ_NONE, NULL, &f, &st, &err) == -ENOMEM);
	CHECK(st.problems >= 1 && err.len);
	findings_free(&f);
	sb_free(&err);
	fix_remove(root);
}

int main(void)
{
	fix_noise(big, BIG, 11);
	fix_noise(other, BIG, 12);
	fix_noise(small, SMALL, 13);
	test_whole();
	test_damaged_frame();
	test_missing_pack();
	test_subset();
	test_cancel_and_lost_finding();
	if (failures) {
		fprintf(stderr, "test_storecheck: %d checks failed\n", failures);
		return 1;
	}
	printf("test_storecheck: all checks passed\n");
	return 0;
}
