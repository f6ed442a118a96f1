/* conf.c: see conf.h. */
#include "conf.h"
#include "exec.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

static const char *const known_keys[] = {
	"store", "data_dir", "cassandra_conf", "nodetool", "nodetool_user", "nodetool_password_file",
	"sstableloader", "sstableloader_user", "sstableloader_password_file", "sstableloader_option",
	"hosts", "load_state_dir",
	"mount_helper", "s3_endpoint", "s3_region", "s3_key_file", "s3_ca_file", "cache_dir",
	"limit_upload", "limit_download", "s3_parallel", "pack_size", "name", "name_period",
	"incremental_name", "incremental_name_period", "incremental_schedule",
	"metrics_file", "hook_pre", "hook_post", "hook_failure", "keep_last",
	"keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within",
	"schedule", "randomized_delay", "on_failure", "node", "host_id",
	"s3_sse", "s3_sse_kms_key_id", "s3_sse_c_key_file", "s3_storage_class", "key_file",
	"to_key_file", "passphrase_file", "cqlsh", "cqlsh_host", "cqlsh_option",
};

struct entry {
	char *key, *value;
	int line;
};

static struct entry *entries;
static size_t nentries;
static char *loaded_path;

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* Adds one entry; the strings are copied. */
static int entry_add(const char *k, const char *v, int line)
{
	struct entry *e = realloc(entries, (nentries + 1) * sizeof(*e));
	if (!e)
		return -ENOMEM;
	entries = e;
	char *key = strdup(k), *value = strdup(v);
	if (!key || !value) {
		free(key);
		free(value);
		return -ENOMEM;
	}
	entries[nentries++] = (struct entry){.key = key, .value = value, .line = line};
	return 0;
}

static bool key_known(const char *k)
{
	for (size_t i = 0; i < ARRAY_SIZE(known_keys); i++)
		if (!strcmp(k, known_keys[i]))
			return true;
	return false;
}

/* Parses one line (modified in place). 0, or < 0 with err saying why. */
static int parse_line(const char *path, char *l, int line, struct strbuf *err)
{
	char *hash = strchr(l, '#');
	if (hash)
		*hash = '\0';
	char *s = trim(l);
	if (!*s)
		return 0;
	char *eq = strchr(s, '=');
	if (!eq) {
		sb_printf(err, "config %s, line %d: expected key = value", path, line);
		return -EINVAL;
	}
	*eq = '\0';
	char *k = trim(s), *v = trim(eq + 1);
	if (!key_known(k)) {
		sb_printf(err, "config %s, line %d: unknown key '%s'", path, line, k);
		return -EINVAL;
	}
	if (!*v) { /* "store =" opened store "", "key_file =" gave a key of no file */
		sb_printf(err, "config %s, line %d: %s has no value (remove the line for the default)",
			  path, line, k);
		return -EINVAL;
	}
	int r = entry_add(k, v, line);
	if (r < 0)
		sb_printf(err, "config %s, line %d: %s", path, line, strerror(-r));
	return r;
}

#define CONFIG_MAX (1 << 20)

/* Is path the null device (the character device 1,3 wherever it is)? */
static bool is_dev_null(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3);
}

int config_load(const char *path, bool must_exist, struct strbuf *err)
{
	char *text = NULL;
	size_t len = 0;
	int r = read_small_file(path, CONFIG_MAX, &text, &len);
	if (r == -ENOENT && !must_exist)
		return 0;
	if (r == -EINVAL && is_dev_null(path)) /* the usual way to say "none": an empty one */
		r = (text = strdup("")) ? 0 : -ENOMEM;
	if (r < 0) {
		sb_printf(err, "config %s: %s", path,
			  r == -EINVAL ? "not a regular file (a text file of key = value lines; "
					 "/dev/null for none)"
			  : r == -EFBIG ? "over 1 MiB, too large for a configuration file"
					: strerror(-r));
		return r;
	}
	const char *nul = memchr(text, '\0', len);
	if (nul) { /* the lines after it would be read as none: not a text file */
		int at = 1;
		for (const char *q = text; q < nul; q++)
			at += *q == '\n';
		sb_printf(err, "config %s, line %d: a NUL byte (not a text file)", path, at);
		free(text);
		return -EINVAL;
	}
	/* Every line counts, blank ones too, so the line numbers are the editor's. */
	int line = 0;
	for (char *l = text; r == 0 && l; ) {
		char *nl = strchr(l, '\n');
		if (nl)
			*nl = '\0';
		r = parse_line(path, l, ++line, err);
		l = nl ? nl + 1 : NULL;
	}
	free(text);
	if (r == 0 && !(loaded_path = strdup(path))) {
		sb_printf(err, "config %s: %s", path, strerror(ENOMEM));
		r = -ENOMEM;
	}
	return r;
}

const char *config_path(void)
{
	return loaded_path;
}

const char *config_get(const char *key)
{
	return config_get_at(key, NULL);
}

const char *config_get_at(const char *key, int *line)
{
	for (size_t i = nentries; i-- > 0;) {
		if (!strcmp(entries[i].key, key)) {
			if (line)
				*line = entries[i].line;
			return entries[i].value;
		}
	}
	return NULL;
}

void config_reset(void)
{
	for (size_t i = 0; i < nentries; i++) {
		free(entries[i].key);
		free(entries[i].value);
	}
	free(entries);
	entries = NULL;
	nentries = 0;
	free(loaded_path);
	loaded_path = NULL;
}

int config_get_all(const char *key, char ***v, size_t *n)
{
	for (size_t i = 0; i < nentries; i++) {
		if (strcmp(entries[i].key, key))
			continue;
		char **p = realloc(*v, (*n + 1) * sizeof(*p));
		if (!p)
			return -ENOMEM;
		*v = p;
		p[(*n)++] = entries[i].value;
	}
	return 0;
}

int config_each(int (*cb)(void *ctx, const char *key, const char *value, int line), void *ctx)
{
	for (size_t i = 0; i < nentries; i++) {
		int r = cb(ctx, entries[i].key, entries[i].value, entries[i].line);
		if (r)
			return r;
	}
	return 0;
}

/* One word of s at *p into a (quotes removed); *p moves past it. 0, or -EINVAL with err. */
static int split_word(const char **p, struct strbuf *w, struct strbuf *err)
{
	const char *s = *p;
	char quote = 0;
	int r = 0;
	for (; r == 0 && *s && (quote || !isspace((unsigned char)*s)); s++) {
		if (quote == '\'' && *s == '\'')
			quote = 0;
		else if (quote == '"' && *s == '"')
			quote = 0;
		else if (!quote && (*s == '\'' || *s == '"'))
			quote = *s;
		else if (quote != '\'' && *s == '\\' && s[1] && (!quote || s[1] == '"' || s[1] == '\\'))
			r = sb_append(w, ++s, 1);
		else
			r = sb_append(w, s, 1);
	}
	*p = s;
	if (r == 0 && quote) {
		sb_printf(err, "unterminated %s quote", quote == '"' ? "double" : "single");
		return -EINVAL;
	}
	return r < 0 ? r : sb_append(w, "", 0);
}

int config_split_words(const char *value, struct strv *out, struct strbuf *err)
{
	int r = 0;
	const char *p = value;
	while (r == 0) {
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		struct strbuf w = {0};
		r = split_word(&p, &w, err) ?: strv_push(out, w.buf ? w.buf : "");
		sb_free(&w);
	}
	if (r == -ENOMEM)
		sb_printf(err, "%s", strerror(ENOMEM));
	if (r == 0 && out->n == 0) {
		sb_printf(err, "no program named");
		r = -EINVAL;
	}
	return r;
}
