/* Unit tests for the CLI layer (tools/cli.c, tools/conf.c): configuration parsing, the number,
 * size and duration parsers, the option table with its configuration fallback, the selection,
 * the JSON writer, closest names, the escaping of names, and exec_capture (tools/exec.c). */
#include "cli.h"
#include "conf.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

/* conf.c's strdup fails for this one string, as a real one fails when memory runs out. */
#define FAIL_STRDUP "strdup-fails-for-this-value"
char *strdup(const char *s)
{
	if (!strcmp(s, FAIL_STRDUP)) {
		errno = ENOMEM;
		return NULL;
	}
	size_t n = strlen(s) + 1;
	char *p = malloc(n);
	return p ? memcpy(p, s, n) : NULL;
}

static char tmpdir[] = "/tmp/cb-test-cli-XXXXXX";

static const char *write_conf(const char *name, const char *text)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

/* Loads text as the configuration (after forgetting any earlier one); err gets the message. */
static int load(const char *text, struct strbuf *err)
{
	config_reset();
	sb_free(err);
	return config_load(write_conf("c.conf", text), true, err);
}

static void test_config(void)
{
	struct strbuf err = {0};
	/* blank lines count: the bad line is line 6 of the file */
	CHECK(load("# settings\n\nstore = /s\n\n   \nno equals sign here\n", &err) == -EINVAL);
	CHECK(err.buf && strstr(err.buf, "line 6: expected key = value"));
	CHECK(load("\n\n\nstroe = /x\n", &err) == -EINVAL);
	CHECK(err.buf && strstr(err.buf, "line 4: unknown key 'stroe'"));
	/* values, repeats, comments, line numbers */
	CHECK(load("store = /a # comment\n\ndata_dir = d1\ndata_dir = d2\nstore=/b\n", &err) == 0);
	int line = 0;
	CHECK(!strcmp(config_get_at("store", &line), "/b") && line == 5);
	char **v = NULL;
	size_t n = 0;
	CHECK(config_get_all("data_dir", &v, &n) == 0 && n == 2 && !strcmp(v[0], "d1") && !strcmp(v[1], "d2"));
	free(v);
	CHECK(config_get("hosts") == NULL);
	/* a failed strdup is an error, not an entry with a NULL value */
	CHECK(load("store = /s\nnodetool = " FAIL_STRDUP "\n", &err) == -ENOMEM);
	CHECK(err.buf && strstr(err.buf, "line 2"));
	CHECK(config_get("nodetool") == NULL);
	/* a file without a final newline */
	CHECK(load("hosts = a,b", &err) == 0 && !strcmp(config_get("hosts"), "a,b"));
	/* missing: an error only when named */
	config_reset();
	sb_free(&err);
	CHECK(config_load("/nonexistent/cb.conf", false, &err) == 0 && !config_path());
	CHECK(config_load("/nonexistent/cb.conf", true, &err) == -ENOENT);
	sb_free(&err);
	config_reset();
}

static void test_numbers(void)
{
	struct strbuf err = {0};
	uint64_t v = 0;
	CHECK(parse_u64("42", 1, 100, &v, &err) == 0 && v == 42);
	CHECK(parse_u64("0", 1, 100, &v, &err) == -ERANGE);
	CHECK(parse_u64("101", 1, 100, &v, &err) == -ERANGE && strstr(err.buf, "from 1 to 100"));
	CHECK(parse_u64("18446744073709551615", 0, 0, &v, &err) == 0 && v == UINT64_MAX);
	CHECK(parse_u64("18446744073709551616", 0, 0, &v, &err) == -ERANGE);
	CHECK(parse_u64("", 0, 0, &v, &err) == -EINVAL);
	CHECK(parse_u64("-1", 0, 0, &v, &err) == -EINVAL);
	CHECK(parse_u64("12x", 0, 0, &v, &err) == -EINVAL);
	CHECK(parse_u64(" 1", 0, 0, &v, &err) == -EINVAL);
	sb_free(&err);

	CHECK(parse_size("512", &v, &err) == 0 && v == 512);
	CHECK(parse_size("64K", &v, &err) == 0 && v == 64 << 10);
	CHECK(parse_size("64kib", &v, &err) == 0 && v == 64 << 10);
	CHECK(parse_size("3M", &v, &err) == 0 && v == 3u << 20);
	CHECK(parse_size("2GiB", &v, &err) == 0 && v == 2ull << 30);
	CHECK(parse_size("1T", &v, &err) == 0 && v == 1ull << 40);
	CHECK(parse_size("7B", &v, &err) == 0 && v == 7);
	CHECK(parse_size("16777216T", &v, &err) == -ERANGE);
	sb_free(&err);
	CHECK(parse_size("1KB", &v, &err) == -EINVAL && strstr(err.buf, "ambiguous"));
	sb_free(&err);
	CHECK(parse_size("1X", &v, &err) == -EINVAL && strstr(err.buf, "unknown unit"));
	CHECK(parse_size("K", &v, &err) == -EINVAL);
	CHECK(parse_size("1.5G", &v, &err) == -EINVAL);
	sb_free(&err);
}

static void test_durations(void)
{
	struct strbuf err = {0};
	struct duration d;
	CHECK(parse_duration("7d", &d, &err) == 0 && d.days == 7 && !d.years && !d.hours);
	CHECK(parse_duration("1y2m", &d, &err) == 0 && d.years == 1 && d.months == 2);
	CHECK(parse_duration("1y5m7d2h", &d, &err) == 0 && d.years == 1 && d.months == 5 && d.days == 7 &&
	      d.hours == 2);
	CHECK(parse_duration("2w3d", &d, &err) == 0 && d.days == 17);
	CHECK(parse_duration("12h30min", &d, &err) == 0 && d.hours == 12 && d.minutes == 30);
	CHECK(parse_duration("90s", &d, &err) == 0 && d.seconds == 90);
	CHECK(parse_duration("", &d, &err) == -EINVAL);
	CHECK(parse_duration("7", &d, &err) == -EINVAL);
	CHECK(parse_duration("d", &d, &err) == -EINVAL);
	CHECK(parse_duration("7x", &d, &err) == -EINVAL);
	CHECK(parse_duration("1d 2h", &d, &err) == -EINVAL);
	CHECK(parse_duration("9999999999d", &d, &err) == -ERANGE);
	sb_free(&err);
	/* the calendar arithmetic is retention's (catalog/retention.c, tests/unit/test_retention.c) */
}

static void test_options(void)
{
	struct strbuf err = {0};
	CHECK(load("\nstore = /from/config\ndata_dir = /d1\ndata_dir = /d2\n", &err) == 0);
	const char *store = NULL, *name = NULL;
	bool json = false;
	uint64_t threads = 4, frame = 0;
	struct duration within = {0};
	struct strv dirs = {0};
	struct selection sel = {0};
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &store, .arg = "DIR",
		 .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "data-dir", .type = OPT_STRINGS, .value = &dirs, .arg = "DIR", .config_key = "data_dir"},
		{.name = "name", .type = OPT_STRING, .value = &name, .arg = "NAME"},
		{.name = "json", .type = OPT_FLAG, .value = &json},
		{.name = "threads", .type = OPT_U64, .value = &threads, .arg = "N", .min = 1, .max = 64},
		{.name = "frame", .type = OPT_SIZE, .value = &frame, .arg = "SIZE", .min = 4096, .max = 1 << 26},
		{.name = "keep-within", .type = OPT_DURATION, .value = &within, .arg = "DURATION"},
		{.name = "keyspace", .type = OPT_KEYSPACE, .value = &sel, .arg = "KS"},
		{.name = "table", .type = OPT_TABLE, .value = &sel, .arg = "KS.TABLE"},
		{0},
	};
	struct cli_command cmd = {.name = "test", .operands = "NAME...", .min_operands = 1,
				  .max_operands = -1, .options = opts};
	char *argv[] = {"cassbackup test", "op1", "--json", "--threads=8", "--frame", "128K", "-s/x",
			"--keep-within", "1y2m", "--table", "ks.t", "--keyspace", "k2", "op2", "--", "--op3",
			NULL};
	int argc = (int)ARRAY_SIZE(argv) - 1, first = 0;
	CHECK(cli_parse(&cmd, argc, argv, &first) == CLI_RUN);
	CHECK(json && threads == 8 && frame == 128 << 10 && !strcmp(store, "/x") && !name);
	/* on the line, not from the configuration; data_dir from the configuration */
	CHECK(opts[0].given && !opts[0].from_config && opts[1].given && opts[1].from_config);
	CHECK(!opts[2].given && !opts[2].from_config);
	CHECK(within.years == 1 && within.months == 2);
	/* not on the line: the configuration's values, all of a repeated key */
	CHECK(dirs.n == 2 && !strcmp(dirs.v[0], "/d1") && !strcmp(dirs.v[1], "/d2"));
	CHECK(argc - first == 3 && !strcmp(argv[first], "op1") && !strcmp(argv[first + 1], "op2") &&
	      !strcmp(argv[first + 2], "--op3"));
	CHECK(selection_matches(&sel, "ks", "t") && selection_matches(&sel, "k2", "any") &&
	      !selection_matches(&sel, "ks", "u") && selection_unmatched(&sel) == NULL);
	strv_free(&dirs);
	selection_free(&sel);

	/* usage errors: each is CB_EXIT_USAGE */
	char *bad1[] = {"x", "--threads", "0", "a", NULL};
	char *bad2[] = {"x", "--nope", "a", NULL};
	char *bad3[] = {"x", "--json=yes", "a", NULL};
	char *bad4[] = {"x", "--frame", "1KB", "a", NULL};
	char *bad5[] = {"x", "--table", "nodot", "a", NULL};
	char *bad6[] = {"x", "--store", NULL};
	char *bad7[] = {"x", "--json", NULL}; /* no operand */
	char **bads[] = {bad1, bad2, bad3, bad4, bad5, bad6, bad7};
	for (size_t i = 0; i < ARRAY_SIZE(bads); i++) {
		int n = 0;
		while (bads[i][n])
			n++;
		for (size_t k = 0; opts[k].name; k++)
			opts[k].given = false;
		CHECK(cli_parse(&cmd, n, bads[i], &first) == CB_EXIT_USAGE);
		strv_free(&dirs);
		selection_free(&sel);
	}
	/* a required option missing from line and configuration */
	config_reset();
	for (size_t k = 0; opts[k].name; k++)
		opts[k].given = false;
	store = NULL;
	char *noreq[] = {"x", "a", NULL};
	CHECK(cli_parse(&cmd, 2, noreq, &first) == CB_EXIT_USAGE);
	/* the same from the configuration: given, and said to come from it */
	CHECK(load("store = /conf\n", &err) == 0);
	for (size_t k = 0; opts[k].name; k++)
		opts[k].given = opts[k].from_config = false;
	CHECK(cli_parse(&cmd, 2, noreq, &first) == CLI_RUN && !strcmp(store, "/conf"));
	CHECK(opts[0].given && opts[0].from_config);
	/* a configuration value goes through the option's parser too */
	CHECK(load("store = /s\n\nhosts = many\n", &err) == 0);
	uint64_t hosts = 0;
	struct cli_option nopts[] = {
		{.name = "hosts", .type = OPT_U64, .value = &hosts, .arg = "N", .config_key = "hosts"},
		{0},
	};
	struct cli_command ncmd = {.name = "n", .options = nopts};
	char *nargv[] = {"x", NULL};
	CHECK(cli_parse(&ncmd, 1, nargv, &first) == CB_EXIT_USAGE);
	char *hargv[] = {"x", "--help", NULL};
	CHECK(cli_parse(&ncmd, 2, hargv, &first) == CB_EXIT_OK);
	config_reset();
	sb_free(&err);

	/* help is generated from the table */
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	cli_help(&cmd, f);
	fclose(f);
	CHECK(strstr(text, "usage: cassbackup test --store DIR [--data-dir DIR]... [--name NAME] [--json]"));
	CHECK(strstr(text, "--store DIR") && strstr(text, "(config: store)") && strstr(text, "--config FILE") &&
	      strstr(text, "exit status: 0 ok, 1 the work failed, 2 usage or configuration error, 3 no such"));
	free(text);
}

static void test_take_config(void)
{
	char *argv[] = {"cassbackup", "list", "--config", "/a", "--json", "--config=/b", "--", "--config", "x", NULL};
	const char *path = NULL;
	int n = cli_take_config(9, argv, &path);
	CHECK(n == 6 && !strcmp(path, "/b") && !strcmp(argv[2], "--json") && !strcmp(argv[3], "--") &&
	      !strcmp(argv[4], "--config") && argv[6] == NULL);
	char *bad[] = {"cassbackup", "list", "--config", NULL};
	CHECK(cli_take_config(3, bad, &path) == -1);
}

static void test_selection(void)
{
	struct selection s = {0};
	struct strbuf err = {0};
	CHECK(selection_is_empty(&s) && selection_matches(&s, "any", "thing"));
	CHECK(selection_add_table(&s, "shop.orders", &err) == 0);
	CHECK(selection_add_keyspace(&s, "audit", &err) == 0);
	CHECK(selection_add_table(&s, "shop.missing", &err) == 0);
	CHECK(selection_add_table(&s, "noks", &err) == -EINVAL);
	CHECK(selection_add_table(&s, ".t", &err) == -EINVAL);
	CHECK(selection_add_table(&s, "ks.", &err) == -EINVAL);
	CHECK(selection_add_table(&s, "a.b.c", &err) == -EINVAL);
	CHECK(selection_add_keyspace(&s, "../x", &err) == -EINVAL);
	CHECK(selection_add_keyspace(&s, "", &err) == -EINVAL);
	CHECK(!selection_is_empty(&s) && s.n == 3);
	CHECK(selection_matches(&s, "shop", "orders"));
	CHECK(!selection_matches(&s, "shop", "users"));
	CHECK(selection_matches(&s, "audit", "log"));
	CHECK(!selection_matches(&s, "shopx", "orders"));
	const struct selection_entry *u = selection_unmatched(&s);
	CHECK(u && !strcmp(u->keyspace, "shop") && !strcmp(u->table, "missing"));
	struct strbuf m = {0};
	sb_selection_entry(&m, u);
	CHECK(!strcmp(m.buf, "table shop.missing"));
	sb_free(&m);
	sb_free(&err);
	selection_free(&s);
}

static void test_json(void)
{
	struct strbuf sb = {0};
	struct json j;
	json_init(&j, &sb);
	json_array_begin(&j);
	json_object_begin(&j);
	json_kv_str(&j, "name", "a\"b\n");
	json_kv_u64(&j, "n", 18446744073709551615ull);
	json_kv_i64(&j, "i", -5);
	json_kv_bool(&j, "ok", true);
	json_key(&j, "list");
	json_array_begin(&j);
	json_str(&j, "x");
	json_null(&j);
	json_array_end(&j);
	json_key(&j, "empty");
	json_object_begin(&j);
	json_object_end(&j);
	json_object_end(&j);
	json_object_begin(&j);
	json_kv_str(&j, "null", NULL);
	json_object_end(&j);
	json_array_end(&j);
	CHECK(json_error(&j) == 0);
	CHECK(!strcmp(sb.buf, "[\n  {\"name\": \"a\\\"b\\n\", \"n\": 18446744073709551615, \"i\": -5, "
			      "\"ok\": true, \"list\": [\"x\", null], \"empty\": {}},\n  {\"null\": null}\n]\n"));
	sb_free(&sb);
	json_init(&j, &sb);
	json_array_begin(&j);
	json_array_end(&j);
	CHECK(!strcmp(sb.buf, "[]\n"));
	json_array_end(&j); /* one end too many */
	CHECK(json_error(&j) == -EINVAL);
	sb_free(&sb);
}

static void test_names(void)
{
	CHECK(edit_distance("", "") == 0 && edit_distance("abc", "abc") == 0);
	CHECK(edit_distance("kitten", "sitting") == 3 && edit_distance("", "abc") == 3);
	const char *cand[] = {"nightly-1", "nightly-2", "weekly-1", "nightly-10", "other"};
	const char *out[3];
	size_t n = closest_names("nightly-3", cand, 5, out, 3);
	CHECK(n == 3 && !strcmp(out[0], "nightly-1") && !strcmp(out[1], "nightly-2") &&
	      !strcmp(out[2], "nightly-10"));
	CHECK(closest_names("zzzzzzzz", cand, 5, out, 3) == 0);
	CHECK(closest_names("nightly-1", cand, 5, out, 1) == 1 && !strcmp(out[0], "nightly-2"));
	char *e = cli_escape("a\nb\\c\t\x1b[31m\xc3\xa9");
	CHECK(e && !strcmp(e, "a\\nb\\\\c\\t\\x1b[31m\xc3\xa9"));
	free(e);
}

/* exec_capture: stdout and stderr apart, bounded, and a deadline that holds. */
static void test_exec_capture(void)
{
	char *out = NULL, *err = NULL, line[16];
	char *sh[] = {"sh", "-c", "echo out; echo; echo '  ' >&2; echo err1 >&2; echo err2 >&2; exit 3", NULL};
	CHECK(exec_capture(sh, 10, &out, &err) == 3);
	CHECK(out && !strcmp(out, "out\n\n") && err && !strcmp(err, "  \nerr1\nerr2\n"));
	first_line(err, line, sizeof(line));
	CHECK(!strcmp(line, "err1"));
	first_line(out, line, sizeof(line));
	CHECK(!strcmp(line, "out"));
	first_line(NULL, line, sizeof(line));
	CHECK(!line[0]);
	free(out);
	free(err);
	/* more than is kept: the rest is read and dropped, so the program is not blocked */
	char *big[] = {"sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x; echo done >&2", NULL};
	CHECK(exec_capture(big, 10, &out, NULL) == 0 && out && strlen(out) == 64 << 10 && out[0] == 'x');
	free(out);
	/* nothing printed: NULL */
	char *quiet[] = {"true", NULL};
	CHECK(exec_capture(quiet, 10, &out, &err) == 0 && !out && !err);
	/* cannot be run: 127, why on its stderr */
	char *none[] = {"/nonexistent/prog", NULL};
	CHECK(exec_capture(none, 10, NULL, &err) == 127 && err && strstr(err, "cannot run /nonexistent/prog"));
	free(err);
	/* out of time: killed with its process group, also a child holding the pipes open */
	double t0 = mono_seconds();
	char *slow[] = {"sh", "-c", "sleep 30 & sleep 30", NULL};
	CHECK(exec_capture(slow, 1, &out, &err) == -ETIMEDOUT && mono_seconds() - t0 < 10 && !out && !err);
	/* closed its output and goes on: the deadline holds all the same */
	char *closer[] = {"sh", "-c", "exec >&- 2>&-; sleep 30", NULL};
	t0 = mono_seconds();
	CHECK(exec_capture(closer, 1, NULL, NULL) == -ETIMEDOUT && mono_seconds() - t0 < 10);
}

/* Splits value; the words joined with '|' into out, or "ERR: why". */
static void split(const char *value, char *out, size_t n)
{
	struct strv a = {0};
	struct strbuf err = {0};
	if (config_split_words(value, &a, &err) < 0) {
		snprintf(out, n, "ERR: %s", err.buf ? err.buf : "");
	} else {
		out[0] = '\0';
		for (size_t i = 0; i < a.n; i++)
			snprintf(out + strlen(out), n - strlen(out), "%s%s", i ? "|" : "", a.v[i]);
	}
	strv_free(&a);
	sb_free(&err);
}

static void test_split_words(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{"/bin/x", "/bin/x"},
		{"  /bin/x  a\tb  ", "/bin/x|a|b"},
		{"'/a b/x' 'it''s'", "/a b/x|its"},
		{"\"a \\\"q\\\" \\\\ \\n\" b", "a \"q\" \\ \\n|b"},
		{"'a \\ b'", "a \\ b"},
		{"a\\ b c", "a b|c"},
		{"x '' y", "x||y"},
		{"x 'open", "ERR: unterminated single quote"},
		{"x \"open", "ERR: unterminated double quote"},
		{"   ", "ERR: no program named"},
		{"", "ERR: no program named"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char got[256];
		split(cases[i].in, got, sizeof(got));
		if (strcmp(got, cases[i].want)) {
			fprintf(stderr, "split_words(%s): got [%s], want [%s]\n", cases[i].in, got, cases[i].want);
			failures++;
		}
	}
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_config();
	test_numbers();
	test_durations();
	test_options();
	test_take_config();
	test_selection();
	test_json();
	test_names();
	test_exec_capture();
	test_split_words();
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		failures++;
	if (failures) {
		fprintf(stderr, "test_cli: %d checks failed\n", failures);
		return 1;
	}
	printf("test_cli: all checks passed\n");
	return 0;
}
