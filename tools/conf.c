/* conf.c: see conf.h. */
#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const known_keys[] = {
	"store", "data_dir", "cassandra_conf", "nodetool", "nodetool_user", "nodetool_password_file",
	"sstableloader", "sstableloader_user", "sstableloader_password_file", "hosts",
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

int config_load(const char *path, bool must_exist, struct strbuf *err)
{
	char *text = NULL;
	int r = read_small_file(path, 1 << 20, &text, NULL);
	if (r == -ENOENT && !must_exist)
		return 0;
	if (r < 0) {
		sb_printf(err, "config %s: %s", path, strerror(-r));
		return r;
	}
	int line = 0;
	char *save = NULL;
	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		line++;
		char *hash = strchr(l, '#');
		if (hash)
			*hash = '\0';
		char *s = trim(l);
		if (!*s)
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			sb_printf(err, "config %s, line %d: expected key = value", path, line);
			r = -EINVAL;
			break;
		}
		*eq = '\0';
		char *k = trim(s), *v = trim(eq + 1);
		bool known = false;
		for (size_t i = 0; i < sizeof(known_keys) / sizeof(*known_keys); i++)
			known |= !strcmp(k, known_keys[i]);
		if (!known) {
			sb_printf(err, "config %s, line %d: unknown key '%s'", path, line, k);
			r = -EINVAL;
			break;
		}
		struct entry *e = realloc(entries, (nentries + 1) * sizeof(*e));
		if (!e) {
			r = -ENOMEM;
			break;
		}
		entries = e;
		entries[nentries++] = (struct entry){.key = strdup(k), .value = strdup(v), .line = line};
	}
	free(text);
	if (r == 0)
		loaded_path = strdup(path);
	return r;
}

const char *config_path(void)
{
	return loaded_path;
}

const char *config_get(const char *key)
{
	for (size_t i = nentries; i-- > 0;)
		if (!strcmp(entries[i].key, key))
			return entries[i].value;
	return NULL;
}

void config_get_all(const char *key, char ***v, size_t *n)
{
	for (size_t i = 0; i < nentries; i++) {
		if (strcmp(entries[i].key, key))
			continue;
		char **p = realloc(*v, (*n + 1) * sizeof(*p));
		if (!p)
			return;
		*v = p;
		p[(*n)++] = entries[i].value;
	}
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
