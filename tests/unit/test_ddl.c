/* Unit tests of the DDL reading behind restore/load --create-schema (tools/schema_ddl.c):
 * statements split as cqlsh splits them, what each creates, IF NOT EXISTS added. */
#include "schema_ddl.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

/* As Cassandra 4.1's DESCRIBE SCHEMA prints it, with what makes splitting hard. */
static const char described[] =
	"CREATE KEYSPACE shop WITH replication = {'class': 'org.apache.cassandra.locator."
	"SimpleStrategy', 'replication_factor': '1'}  AND durable_writes = true;\n\n"
	"CREATE TYPE shop.address (\n    street text,\n    city text\n);\n\n"
	"CREATE TABLE shop.orders (\n    id int PRIMARY KEY,\n    \"Note\" text\n) WITH comment = "
	"'it''s; tricky -- not a comment'\n    AND compaction = {'class': 'x'};\n\n"
	"CREATE INDEX orders_note_idx ON shop.orders (\"Note\");\n\n"
	"CREATE CUSTOM INDEX IF NOT EXISTS ON shop.orders (id) USING 'StorageAttachedIndex';\n\n"
	"-- a comment; with a semicolon\n"
	"CREATE FUNCTION shop.f(x int) RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java AS $$ "
	"return x; $$;\n\n"
	"CREATE TABLE \"Shop2\".\"Mixed\"\"Case\" (k int PRIMARY KEY);\n";

static void test_split_and_classify(void)
{
	struct ddl d;
	CHECK(ddl_parse(described, &d) == 0);
	CHECK(d.n == 7);
	if (d.n != 7) {
		ddl_free(&d);
		return;
	}
	CHECK(d.v[0].kind == DDL_KEYSPACE && !strcmp(d.v[0].keyspace, "shop") && !strcmp(d.v[0].name, "shop"));
	CHECK(d.v[1].kind == DDL_TYPE && !strcmp(d.v[1].keyspace, "shop") && !strcmp(d.v[1].name, "address"));
	CHECK(d.v[2].kind == DDL_TABLE && !strcmp(d.v[2].name, "orders"));
	CHECK(strstr(d.v[2].text, "tricky -- not a comment'\n    AND compaction") != NULL);
	CHECK(d.v[2].text[strlen(d.v[2].text) - 1] == ';');
	CHECK(d.v[3].kind == DDL_INDEX && !strcmp(d.v[3].name, "orders_note_idx") &&
	      !strcmp(d.v[3].keyspace, "shop") && !strcmp(d.v[3].table, "orders"));
	CHECK(d.v[4].kind == DDL_INDEX && !strcmp(d.v[4].name, "") && !strcmp(d.v[4].table, "orders"));
	CHECK(d.v[5].kind == DDL_OTHER && strstr(d.v[5].text, "$$;") != NULL);
	CHECK(d.v[6].kind == DDL_TABLE && !strcmp(d.v[6].keyspace, "Shop2") &&
	      !strcmp(d.v[6].name, "Mixed\"Case"));
	CHECK(ddl_has(&d, DDL_TABLE, "shop", "orders") && !ddl_has(&d, DDL_TABLE, "shop", "Orders"));
	CHECK(ddl_has(&d, DDL_KEYSPACE, "shop", NULL) && !ddl_has(&d, DDL_KEYSPACE, "shop2", NULL));
	ddl_free(&d);
}

static void expect_ine(const char *in, const char *want)
{
	struct ddl d;
	struct strbuf sb = {0};
	CHECK(ddl_parse(in, &d) == 0 && d.n == 1);
	CHECK(d.n == 1 && ddl_if_not_exists(&d.v[0], &sb) == 0 && sb.buf && !strcmp(sb.buf, want));
	if (sb.buf && strcmp(sb.buf, want))
		fprintf(stderr, "got: %s\nwant: %s\n", sb.buf, want);
	sb_free(&sb);
	ddl_free(&d);
}

static void test_if_not_exists(void)
{
	expect_ine("CREATE KEYSPACE k WITH replication = {};", "CREATE KEYSPACE IF NOT EXISTS k WITH replication = {};");
	expect_ine("create table k.t (a int primary key);", "create table IF NOT EXISTS k.t (a int primary key);");
	expect_ine("CREATE TABLE IF NOT EXISTS k.t (a int PRIMARY KEY);", "CREATE TABLE IF NOT EXISTS k.t (a int PRIMARY KEY);");
	expect_ine("CREATE CUSTOM INDEX ON k.t (a) USING 'x';", "CREATE CUSTOM INDEX IF NOT EXISTS ON k.t (a) USING 'x';");
	expect_ine("CREATE TYPE k.u (a int);", "CREATE TYPE IF NOT EXISTS k.u (a int);");
	expect_ine("CREATE FUNCTION k.f() $$ x $$;", "CREATE FUNCTION k.f() $$ x $$;"); /* left as is */
}

static void test_not_qualified_is_other(void)
{
	struct ddl d;
	CHECK(ddl_parse("CREATE TABLE t (a int PRIMARY KEY); CREATE KEYSPACE a.b;  ; ", &d) == 0);
	CHECK(d.n == 3 && d.v[0].kind == DDL_OTHER && d.v[1].kind == DDL_OTHER);
	ddl_free(&d);
	CHECK(ddl_parse("", &d) == 0 && d.n == 0);
	ddl_free(&d);
	CHECK(ddl_parse("CREATE TABLE k.t (a text) WITH comment = 'unterminated;", &d) == 0 && d.n == 1);
	ddl_free(&d);
}

int main(void)
{
	test_split_and_classify();
	test_if_not_exists();
	test_not_qualified_is_other();
	return failures ? 1 : 0;
}
