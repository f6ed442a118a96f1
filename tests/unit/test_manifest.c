/* Unit tests of the format-2 documents (catalog/manifest.c): round trips, byte names, and
 * hostile or damaged input that every parser must refuse. */
#include "manifest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static struct manifest_file files[] = {
	{.dir = "", .name = "nb-1-big-Data.db", .size = 1234, .attr = {0644, 999, 999, 1700000000123456789}},
	{.dir = ".idx", .name = "nb-1-big-Data.db", .size = 5, .attr = {0600, 0, 0, 42}},
	{.dir = "", .name = "caf\xe9-latin1.db", .size = 0, .attr = {0644, 1, 2, 3}}, /* not UTF-8 */
	{.dir = "", .name = "h\xc3\xa9llo-utf8.db", .size = 7, .attr = {0644, 1, 2, 3}},
};
static struct manifest_dir dirs[] = {{.name = ".idx", .attr = {0755, 999, 999, 5}}};
static struct manifest_table tables[] = {{
	.name = "orders", .id = "5f1c0000000000000000000000000abc", .schema_cql = "CREATE TABLE \"x\";\n",
	.attr = {0755, 999, 999, 9}, .dirs = dirs, .ndirs = 1, .files = files, .nfiles = 4,
}};
static struct manifest_keyspace kss[] = {{.name = "shop", .attr = {0755, 999, 999, 8},
					  .tables = tables, .ntables = 1}};
static char *tokens[] = {"-9223372036854775808", "42"};
static const struct manifest sample = {
	.name = "nightly-1", .node = "n1", .cluster = "c", .datacenter = "dc1", .host_id = "",
	.snapshot_tag = "t1", .cassandra_version = "4.1.3", .tokens = tokens, .ntokens = 2,
	.created_ns = 1763700000000000000, .root_attr = {0700, 999, 999, 1},
	.keyspaces = kss, .nkeyspaces = 1, .files = 4, .bytes = 1246, .new_bytes = 10, .stored_bytes = 99,
};

/* Removes the "manifest_sha256" member from a document manifest_write wrote, as a manifest
 * from before it was written (the tests that edit a document then start from one). */
static void drop_self_sum(char *doc)
{
	char *at = strstr(doc, ",\n \"manifest_sha256\": \"");
	char *end = at ? strchr(at + 23, '"') : NULL; /* past the value's opening quote */
	CHECK(at && end);
	if (at && end)
		memmove(at, end + 1, strlen(end + 1) + 1);
}

static void test_round_trip(void)
{
	struct strbuf sb = {0};
	char err[256] = "";
	CHECK(manifest_write(&sample, &sb, err, sizeof(err)) == 0);
	CHECK(strstr(sb.buf, "\"name_hex\": \"636166e92d6c6174696e312e6462\"") != NULL);
	struct manifest *m = NULL;
	CHECK(manifest_parse(sb.buf, sb.len, &m, err, sizeof(err)) == 0);
	if (!m) {
		fprintf(stderr, "round trip: %s\n", err);
		failures++;
		sb_free(&sb);
		return;
	}
	CHECK(!strcmp(m->name, "nightly-1") && !strcmp(m->cassandra_version, "4.1.3"));
	CHECK(m->ntokens == 2 && !strcmp(m->tokens[0], "-9223372036854775808"));
	CHECK(m->created_ns == sample.created_ns && m->root_attr.mode == 0700);
	CHECK(m->files == 4 && m->bytes == 1246 && m->new_bytes == 10 && m->stored_bytes == 99);
	CHECK(m->nkeyspaces == 1 && m->keyspaces[0].ntables == 1);
	const struct manifest_table *t = &m->keyspaces[0].tables[0];
	CHECK(!strcmp(t->id, tables[0].id) && !strcmp(t->schema_cql, tables[0].schema_cql));
	CHECK(t->ndirs == 1 && !strcmp(t->dirs[0].name, ".idx"));
	CHECK(t->nfiles == 4);
	for (size_t i = 0; i < 4 && i < t->nfiles; i++) {
		CHECK(!strcmp(t->files[i].dir, files[i].dir));
		CHECK(!strcmp(t->files[i].name, files[i].name));
		CHECK(t->files[i].size == files[i].size);
		CHECK(!memcmp(&t->files[i].attr, &files[i].attr, sizeof(files[i].attr)));
	}
	manifest_free(m);
	sb_free(&sb);
}

/* A minimal valid manifest with one file whose fields are spliced in: %s is the file object. */
static const char *frame =
	"{\"format\": 2, \"name\": \"b\", \"created_ns\": 1,"
	" \"root\": {\"mode\": 448, \"uid\": 0, \"gid\": 0, \"mtime_ns\": 0},"
	" \"stats\": {\"files\": 1, \"bytes\": 1, \"new_bytes\": 0, \"stored_bytes\": 0},"
	" \"keyspaces\": [{\"name\": \"ks\", \"mode\": 493, \"uid\": 0, \"gid\": 0, \"mtime_ns\": 0,"
	"  \"tables\": [{\"name\": \"t\", \"id\": \"\", \"mode\": 493, \"uid\": 0, \"gid\": 0,"
	"   \"mtime_ns\": 0, \"files\": [%s]}]}]}";

#define SHA "\"sha256\": \"" \
	"00000000000000000000000000000000000000000000000000000000000000ff\""
#define ATTR "\"mode\": 420, \"uid\": 0, \"gid\": 0, \"mtime_ns\": 0"

static int parse_with_file(const char *file_json)
{
	char doc[4096], err[256] = "";
	snprintf(doc, sizeof(doc), frame, file_json);
	struct manifest *m = NULL;
	int r = manifest_parse(doc, strlen(doc), &m, err, sizeof(err));
	if (r < 0 && !*err && r != -ENOMEM) {
		fprintf(stderr, "error without a reason for %s\n", file_json);
		failures++;
	}
	manifest_free(m);
	return r;
}

static void test_hostile_files(void)
{
	CHECK(parse_with_file("{\"name\": \"nb-1-big-Data.db\", \"size\": 1, " ATTR ", " SHA "}") == 0);
	const char *bad[] = {
		"{\"name\": \"..\", \"size\": 1, " ATTR ", " SHA "}",
		"{\"name\": \".\", \"size\": 1, " ATTR ", " SHA "}",
		"{\"name\": \"\", \"size\": 1, " ATTR ", " SHA "}",
		"{\"name\": \"a/b\", \"size\": 1, " ATTR ", " SHA "}",
		"{\"name\": \"/etc/passwd\", \"size\": 1, " ATTR ", " SHA "}",
		"{\"name\": \"a\\u0000b\", \"size\": 1, " ATTR ", " SHA "}",
		"{\"name_hex\": \"2e2e\", \"size\": 1, " ATTR ", " SHA "}",     /* ".." in hex */
		"{\"name_hex\": \"612f62\", \"size\": 1, " ATTR ", " SHA "}",   /* "a/b" */
		"{\"name_hex\": \"610062\", \"size\": 1, " ATTR ", " SHA "}",   /* NUL */
		"{\"name_hex\": \"6\", \"size\": 1, " ATTR ", " SHA "}",
		"{\"dir\": \"..\", \"name\": \"x\", \"size\": 1, " ATTR ", " SHA "}",
		"{\"dir\": \"idx\", \"name\": \"x\", \"size\": 1, " ATTR ", " SHA "}", /* not ".idx" */
		"{\"dir\": \"../../x\", \"name\": \"x\", \"size\": 1, " ATTR ", " SHA "}",
		"{\"name\": \"x\", \"size\": -1, " ATTR ", " SHA "}",
		"{\"name\": \"x\", \"size\": 4611686018427387904, " ATTR ", " SHA "}", /* 2^62 */
		"{\"name\": \"x\", \"size\": 1.5, " ATTR ", " SHA "}",
		"{\"name\": \"x\", \"size\": \"1\", " ATTR ", " SHA "}",
		"{\"name\": \"x\", " ATTR ", " SHA "}",
		"{\"name\": \"x\", \"size\": 1, \"mode\": 65536, \"uid\": 0, \"gid\": 0, \"mtime_ns\": 0, " SHA "}",
		"{\"name\": \"x\", \"size\": 1, \"mode\": 420, \"uid\": -1, \"gid\": 0, \"mtime_ns\": 0, " SHA "}",
		"{\"name\": \"x\", \"size\": 1, " ATTR ", \"sha256\": \"abc\"}",
		"{\"name\": \"x\", \"size\": 1, " ATTR ", \"sha256\": \"zz00000000000000000000000000000000000000000000000000000000000000\"}",
		"{\"name\": \"x\", \"name\": \"y\", \"size\": 1, " ATTR ", " SHA "}", /* duplicate key */
		"{\"name\": \"x\", \"size\": 1, " ATTR ", " SHA "}, {\"name\": \"x\", \"size\": 2, " ATTR ", " SHA "}",
		"\"x\"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse_with_file(bad[i]);
		if (r != -EBADMSG) {
			fprintf(stderr, "hostile file entry %zu accepted (%d): %s\n", i, r, bad[i]);
			failures++;
		}
	}
}

/* The node's own files: round trip, and the one directory they may name. */
static void test_node_files(void)
{
	struct manifest_file nf[] = {
		{.dir = "", .name = MANIFEST_SCHEMA_FILE, .size = 3, .attr = {0600, 0, 0, 1}},
		{.dir = MANIFEST_CONF_DIR, .name = "cassandra.yaml", .size = 4, .attr = {0640, 7, 8, 2}},
	};
	nf[1].sha256[0] = 0xab;
	struct manifest m = sample;
	m.node_files = nf;
	m.nnode_files = 2;
	struct strbuf sb = {0};
	char err[256] = "";
	struct manifest *back = NULL;
	CHECK(manifest_write(&m, &sb, err, sizeof(err)) == 0);
	CHECK(manifest_parse(sb.buf, sb.len, &back, err, sizeof(err)) == 0);
	CHECK(back && back->nnode_files == 2);
	const struct manifest_file *f = back ? manifest_node_file(back, MANIFEST_CONF_DIR, "cassandra.yaml") : NULL;
	CHECK(f && f->size == 4 && f->attr.uid == 7 && f->attr.mode == 0640 && f->sha256[0] == 0xab);
	CHECK(back && manifest_node_file(back, "", MANIFEST_SCHEMA_FILE) != NULL);
	CHECK(back && !manifest_node_file(back, "", "cassandra.yaml"));
	manifest_free(back);
	/* a writer never commits what no reader would take */
	nf[1].dir = ".idx";
	sb.len = 0;
	CHECK(manifest_write(&m, &sb, err, sizeof(err)) == -EINVAL);
	nf[1].dir = "";
	nf[1].name = MANIFEST_SCHEMA_FILE;
	CHECK(manifest_write(&m, &sb, err, sizeof(err)) == -EINVAL); /* twice */
	sb_free(&sb);
	/* hostile node files */
	static const char *const bad[] = {
		"[{\"dir\": \"conf\", \"name\": \"x\", \"size\": 1, " ATTR ", " SHA "}]",
		"[{\"dir\": \"..\", \"name\": \"x\", \"size\": 1, " ATTR ", " SHA "}]",
		"[{\"name\": \"../x\", \"size\": 1, " ATTR ", " SHA "}]",
		"[{\"name\": \"x\", \"size\": 1, " ATTR ", " SHA "}, {\"name\": \"x\", \"size\": 1, " ATTR ", " SHA "}]",
		"{}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char doc[4096];
		snprintf(doc, sizeof(doc), "{\"format\": 2, \"name\": \"b\", \"created_ns\": 1,"
			 " \"root\": {" ATTR "}, \"stats\": {\"files\": 0, \"bytes\": 0, \"new_bytes\": 0,"
			 " \"stored_bytes\": 0}, \"keyspaces\": [], \"node_files\": %s}", bad[i]);
		struct manifest *x = NULL;
		int r = manifest_parse(doc, strlen(doc), &x, err, sizeof(err));
		if (r != -EBADMSG) {
			fprintf(stderr, "hostile node files %zu accepted (%d): %s\n", i, r, bad[i]);
			failures++;
		}
		manifest_free(x);
	}
}

static void test_hostile_documents(void)
{
	char err[256];
	struct manifest *m;
	const char *bad[] = {
		"", "[]", "{", "null", "{\"format\": 1}", "{\"format\": 3}",
		"{\"format\": 2, \"name\": \"../x\"}",
		"{\"format\": 2, \"name\": \"x/../y\", \"created_ns\": 1}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		m = NULL;
		err[0] = 0;
		CHECK(manifest_parse(bad[i], strlen(bad[i]), &m, err, sizeof(err)) == -EBADMSG);
		CHECK(m == NULL && err[0]);
	}
	/* The writer refuses what the reader would. */
	struct manifest bad_name = sample;
	bad_name.name = "..";
	struct strbuf sb = {0};
	CHECK(manifest_write(&bad_name, &sb, err, sizeof(err)) == -EINVAL);
	sb_free(&sb);
}

static void test_pack_index(void)
{
	struct pack_blob blobs[2] = {{.size = 10, .offset = 512}, {.size = 0, .offset = 1536}};
	blobs[1].sha256[0] = 1;
	struct pack_index pi = {blobs, 2}, back;
	struct strbuf sb = {0};
	char err[256];
	CHECK(pack_index_write(&pi, &sb) == 0);
	CHECK(pack_index_parse(sb.buf, sb.len, &back, err, sizeof(err)) == 0);
	CHECK(back.nblobs == 2 && back.blobs[0].offset == 512 && back.blobs[1].sha256[0] == 1);
	pack_index_free(&back);
	sb_free(&sb);
	blobs[1].sha256[0] = 0; /* the same blob twice */
	CHECK(pack_index_write(&pi, &sb) == 0);
	CHECK(pack_index_parse(sb.buf, sb.len, &back, err, sizeof(err)) == -EBADMSG);
	sb_free(&sb);
	const char *neg = "{\"format\": 2, \"blobs\": [{\"sha256\": "
			  "\"00000000000000000000000000000000000000000000000000000000000000ff\","
			  " \"size\": 1, \"offset\": -512}]}";
	CHECK(pack_index_parse(neg, strlen(neg), &back, err, sizeof(err)) == -EBADMSG);
}

static void test_store_config(void)
{
	struct store_config c = {.format = CB_FORMAT, .created_ns = 5}, back;
	memcpy(c.id, "0123456789abcdef0123456789abcdef", 33);
	struct strbuf sb = {0};
	char err[256];
	CHECK(store_config_write(&c, &sb) == 0);
	CHECK(store_config_parse(sb.buf, sb.len, &back, err, sizeof(err)) == 0);
	CHECK(!strcmp(back.id, c.id) && back.created_ns == 5 && back.format == CB_FORMAT);
	sb_free(&sb);
	const char *other = "{\"store\": \"cassbackup\", \"format\": 3, \"id\": "
			    "\"0123456789abcdef0123456789abcdef\", \"created_ns\": 1}";
	CHECK(store_config_parse(other, strlen(other), &back, err, sizeof(err)) == -EPROTONOSUPPORT);
	CHECK(back.format == 3 && strstr(err, "format 3"));
	const char *foreign = "{\"store\": \"restic\", \"format\": 2}";
	CHECK(store_config_parse(foreign, strlen(foreign), &back, err, sizeof(err)) == -EBADMSG);
	CHECK(store_config_parse("\x89PNG", 4, &back, err, sizeof(err)) == -EBADMSG);
}

/* An incremental's base and previous, and its files' "added" mark, survive a round trip; a
 * base that is not a name, or one without the other, is refused both ways. */
static void test_incremental(void)
{
	struct manifest_file f2[4];
	memcpy(f2, files, sizeof(f2));
	f2[1].added = true;
	struct manifest_table t2 = tables[0];
	t2.files = f2;
	struct manifest_keyspace k2 = kss[0];
	k2.tables = &t2;
	struct manifest inc = sample;
	inc.keyspaces = &k2;
	inc.base = "full-1";
	inc.previous = "inc-1";
	struct strbuf sb = {0};
	char err[256] = "";
	struct manifest *m = NULL;
	CHECK(manifest_write(&inc, &sb, err, sizeof(err)) == 0);
	CHECK(manifest_parse(sb.buf, sb.len, &m, err, sizeof(err)) == 0);
	if (m) {
		CHECK(m->base && !strcmp(m->base, "full-1") && !strcmp(m->previous, "inc-1"));
		const struct manifest_table *t = &m->keyspaces[0].tables[0];
		for (size_t i = 0; i < t->nfiles; i++)
			CHECK(t->files[i].added == (!strcmp(t->files[i].dir, ".idx")));
	}
	manifest_free(m);
	m = NULL;
	sb.len = 0;
	CHECK(manifest_write(&sample, &sb, err, sizeof(err)) == 0);
	CHECK(!strstr(sb.buf, "\"base\"") && !strstr(sb.buf, "\"added\""));
	CHECK(manifest_parse(sb.buf, sb.len, &m, err, sizeof(err)) == 0);
	CHECK(m && !m->base && !m->previous);
	manifest_free(m);
	inc.base = "../x";
	CHECK(manifest_write(&inc, &sb, err, sizeof(err)) == -EINVAL);
	inc.base = "full-1";
	inc.previous = NULL;
	CHECK(manifest_write(&inc, &sb, err, sizeof(err)) == -EINVAL);
	const char *bad[] = {
		"{\"format\": 2, \"name\": \"b\", \"created_ns\": 1, \"base\": \"..\", \"previous\": \"a\"}",
		"{\"format\": 2, \"name\": \"b\", \"created_ns\": 1, \"base\": \"a\"}",
		"{\"format\": 2, \"name\": \"b\", \"created_ns\": 1, \"base\": 3, \"previous\": \"a\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		m = NULL;
		CHECK(manifest_parse(bad[i], strlen(bad[i]), &m, err, sizeof(err)) == -EBADMSG && !m);
	}
	CHECK(parse_with_file("{\"name\": \"x\", \"size\": 1, " ATTR ", " SHA ", \"added\": true}") == 0);
	CHECK(parse_with_file("{\"name\": \"x\", \"size\": 1, " ATTR ", " SHA ", \"added\": 1}") == -EBADMSG);
	sb_free(&sb);
}

/* Scopes stay canonical however they are built, compare as sets, and round-trip. */
static void test_scope(void)
{
	struct manifest_scope a = {0}, b = {0}, none = {0};
	CHECK(manifest_scope_add(&a, "ks2", "t") == 0);
	CHECK(manifest_scope_add(&a, "ks1", "b") == 0);
	CHECK(manifest_scope_add(&a, "ks1", "a") == 0);
	CHECK(manifest_scope_add(&a, "ks2", NULL) == 0); /* takes in ks2.t */
	CHECK(manifest_scope_add(&a, "ks2", "u") == 0);  /* in ks2 already */
	CHECK(manifest_scope_add(&a, "ks1", "a") == 0);  /* twice */
	CHECK(a.n == 3 && !strcmp(a.v[0].table, "a") && !strcmp(a.v[1].table, "b") &&
	      !strcmp(a.v[2].keyspace, "ks2") && !a.v[2].table);
	CHECK(manifest_scope_add(&b, "ks2", NULL) == 0);
	CHECK(manifest_scope_add(&b, "ks1", "b") == 0);
	CHECK(!manifest_scope_equal(&a, &b));
	CHECK(manifest_scope_add(&b, "ks1", "a") == 0);
	CHECK(manifest_scope_equal(&a, &b));
	/* every table with or without the system keyspaces; a selection is never "every table" */
	struct manifest_scope sys = {.system = true};
	CHECK(!manifest_scope_equal(&none, &sys) && !manifest_scope_equal(&none, &a));
	struct manifest with = sample;
	with.scope = a;
	struct strbuf sb = {0};
	char err[256] = "";
	struct manifest *m = NULL;
	CHECK(manifest_write(&with, &sb, err, sizeof(err)) == 0);
	CHECK(manifest_parse(sb.buf, sb.len, &m, err, sizeof(err)) == 0);
	CHECK(m && manifest_scope_equal(&m->scope, &a) && !m->scope_unrecorded);
	manifest_free(m);
	with.scope = sys;
	sb.len = 0;
	m = NULL;
	CHECK(manifest_write(&with, &sb, err, sizeof(err)) == 0);
	CHECK(manifest_parse(sb.buf, sb.len, &m, err, sizeof(err)) == 0);
	CHECK(m && manifest_scope_equal(&m->scope, &sys));
	manifest_free(m);
	/* a manifest from before scopes reads as every table but the system ones; a bad scope
	 * is refused (each put in place of a good one) */
	with.scope = none;
	sb.len = 0;
	CHECK(manifest_write(&with, &sb, err, sizeof(err)) == 0);
	drop_self_sum(sb.buf);
	char *at = strstr(sb.buf, "\"scope\": {");
	char *end = at ? strchr(at, '}') : NULL;
	CHECK(at && end);
	const char *bad[] = {"", "\"scope\": 1", "\"scope\": {\"system\": 1, \"select\": []}",
			     "\"scope\": {\"system\": false}",
			     "\"scope\": {\"system\": false, \"select\": [{\"keyspace\": \"..\"}]}",
			     "\"scope\": {\"system\": false, \"select\": [{\"table\": \"t\"}]}",
			     "\"scope\": {\"system\": false, \"select\": [3]}"};
	for (size_t i = 0; at && end && i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct strbuf doc = {0};
		sb_printf(&doc, "%.*s%s%s", (int)(at - sb.buf), sb.buf, bad[i], end + 1);
		if (!*bad[i]) /* the comma that followed */
			memmove(doc.buf + (at - sb.buf), doc.buf + (at - sb.buf) + 1,
				doc.len - (size_t)(at - sb.buf));
		m = NULL;
		int r = manifest_parse(doc.buf, strlen(doc.buf), &m, err, sizeof(err));
		if (i == 0)
			CHECK(r == 0 && m && manifest_scope_equal(&m->scope, &none) &&
			      m->scope_unrecorded);
		else
			CHECK(r == -EBADMSG && !m);
		manifest_free(m);
		sb_free(&doc);
	}
	/* one from before scopes holding a system keyspace was made with --include-system (as
	 * cassbackup backup makes them) */
	struct manifest_keyspace sys_ks[2] = {kss[0], kss[0]};
	sys_ks[1].name = "system_auth";
	with.keyspaces = sys_ks;
	with.nkeyspaces = 2;
	sb.len = 0;
	CHECK(manifest_write(&with, &sb, err, sizeof(err)) == 0);
	drop_self_sum(sb.buf);
	at = strstr(sb.buf, "\"scope\": {");
	end = at ? strchr(at, '}') : NULL;
	CHECK(at && end);
	if (at && end) {
		memmove(at, end + 2, strlen(end + 2) + 1); /* the scope and its comma */
		m = NULL;
		CHECK(manifest_parse(sb.buf, strlen(sb.buf), &m, err, sizeof(err)) == 0);
		CHECK(m && manifest_scope_equal(&m->scope, &sys));
		manifest_free(m);
	}
	manifest_scope_free(&a);
	manifest_scope_free(&b);
	sb_free(&sb);
}

/* Every single-bit flip of a manifest's bytes is refused: its own SHA-256 covers them all, a
 * flip of that member's key is damage, not a manifest from before it; that one still reads. */
static void test_every_bit_flip_is_refused(void)
{
	struct strbuf sb = {0};
	char err[256] = "";
	struct manifest *m = NULL;
	CHECK(manifest_write(&sample, &sb, err, sizeof(err)) == 0);
	CHECK(manifest_parse(sb.buf, sb.len, &m, err, sizeof(err)) == 0);
	manifest_free(m);
	unsigned flips = 0, read = 0;
	for (size_t i = 0; i < sb.len; i++)
		for (int bit = 0; bit < 8; bit++) {
			sb.buf[i] ^= (char)(1 << bit);
			m = NULL;
			flips++;
			if (manifest_parse(sb.buf, sb.len, &m, err, sizeof(err)) == 0) {
				read++;
				fprintf(stderr, "byte %zu bit %d read: %.40s\n", i, bit, sb.buf + (i > 20 ? i - 20 : 0));
			}
			manifest_free(m);
			sb.buf[i] ^= (char)(1 << bit);
		}
	printf("test_manifest: %u single-bit flips of a %zu-byte manifest: %u read\n", flips, sb.len, read);
	CHECK(read == 0);
	/* the key flipped: damage; the member gone (an older manifest): read */
	char *key = strstr(sb.buf, "manifest_sha256");
	CHECK(key != NULL);
	if (key) {
		key[3] ^= 0x20;
		CHECK(manifest_parse(sb.buf, sb.len, &m, err, sizeof(err)) == -EBADMSG);
		CHECK(strstr(err, "damaged") != NULL);
		key[3] ^= 0x20;
	}
	drop_self_sum(sb.buf);
	m = NULL;
	CHECK(manifest_parse(sb.buf, strlen(sb.buf), &m, err, sizeof(err)) == 0 && m);
	manifest_free(m);
	sb_free(&sb);
}

int main(void)
{
	test_every_bit_flip_is_refused();
	test_round_trip();
	test_scope();
	test_incremental();
	test_hostile_files();
	test_node_files();
	test_hostile_documents();
	test_pack_index();
	test_store_config();
	if (failures) {
		fprintf(stderr, "test_manifest: %d checks failed\n", failures);
		return 1;
	}
	printf("test_manifest: all checks passed\n");
	return 0;
}
