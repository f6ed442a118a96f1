/* cassandra_conf.c: see cassandra_conf.h. */
#include "cassandra_conf.h"
#include "manifest.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- lines -------------------------------------------------------------------------------- */

/* The line starting at p: its length without "\n" or "\r\n"; *next gets the following line
 * (NULL after the last). */
static size_t line_at(const char *p, const char **next)
{
	const char *nl = strchr(p, '\n');
	size_t n = nl ? (size_t)(nl - p) : strlen(p);
	*next = nl ? nl + 1 : NULL;
	return n && p[n - 1] == '\r' ? n - 1 : n;
}

static size_t skip_blanks(const char *s, size_t i, size_t n)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return i;
}

/* Nothing but blanks, or a comment, from s[i] to s[n]. */
static bool rest_empty(const char *s, size_t i, size_t n)
{
	i = skip_blanks(s, i, n);
	return i == n || s[i] == '#';
}

/* ---- scalars -------------------------------------------------------------------------------- */

/* Parses one scalar at s[0..n) into out (emptied first): 'single' ('' is a quote), "double"
 * (backslash escapes \" \\ \t \n; others kept as the character), or plain, which ends at the
 * end, at a comment (" #") or at any character of stops. *used gets the bytes consumed.
 * -EINVAL for an unterminated quote, -ENOMEM. */
static int scalar_at(const char *s, size_t n, const char *stops, struct strbuf *out, size_t *used)
{
	out->len = 0;
	int r = sb_append(out, "", 0);
	size_t i = 0;
	if (n && (s[0] == '\'' || s[0] == '"')) {
		char q = s[0];
		for (i = 1; r == 0; i++) {
			if (i >= n)
				return -EINVAL;
			char c = s[i];
			if (c == q && q == '\'' && i + 1 < n && s[i + 1] == '\'') {
				i++;
			} else if (c == q) {
				i++;
				break;
			} else if (c == '\\' && q == '"' && i + 1 < n) {
				c = s[++i];
				c = c == 'n' ? '\n' : c == 't' ? '\t' : c;
			}
			r = sb_append(out, &c, 1);
		}
		*used = i;
		return r;
	}
	while (i < n && !strchr(stops, s[i]) && !(s[i] == '#' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t')))
		i++;
	*used = i;
	size_t len = i;
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	return r ?: sb_append(out, s, len);
}

/* Where the value of top-level key starts: just after "key:" on a line at column 0, and that
 * line's number; NULL when the key is not there. */
static const char *find_key(const char *text, const char *key, int *lineno)
{
	size_t klen = strlen(key);
	int no = 0;
	for (const char *p = text, *next; p; p = next) {
		size_t n = line_at(p, &next);
		no++;
		if (n < klen || strncmp(p, key, klen) != 0)
			continue;
		size_t i = skip_blanks(p, klen, n);
		if (i < n && p[i] == ':' && (i + 1 == n || p[i + 1] == ' ' || p[i + 1] == '\t')) {
			*lineno = no;
			return p + i + 1;
		}
	}
	return NULL;
}

char *yaml_scalar(const char *text, const char *key)
{
	int no;
	const char *v = find_key(text, key, &no), *next;
	if (!v)
		return NULL;
	size_t n = line_at(v, &next), i = skip_blanks(v, 0, n), used;
	struct strbuf out = {0};
	if (rest_empty(v, i, n) || v[i] == '[' || v[i] == '{' ||
	    scalar_at(v + i, n - i, "", &out, &used) < 0 || !rest_empty(v, i + used, n) ||
	    !strcmp(out.buf, "~") || !strcmp(out.buf, "null")) {
		sb_free(&out);
		return NULL;
	}
	return out.buf;
}

/* ---- lists ---------------------------------------------------------------------------------- */

static int push_item(struct strv *out, const struct strbuf *item, const char *key, int no,
		     struct strbuf *err)
{
	if (!item->len) {
		sb_printf(err, "line %d: %s: an empty item", no, key);
		return -EINVAL;
	}
	return strv_push(out, item->buf);
}

/* The block list after the key's line ("- item" lines, comments and blank lines between). */
static int block_list(const char *p, const char *key, int no, struct strv *out, struct strbuf *err)
{
	struct strbuf item = {0};
	int r = 0;
	for (const char *next; r == 0 && p; p = next) {
		size_t n = line_at(p, &next), i = skip_blanks(p, 0, n), used;
		no++;
		if (rest_empty(p, 0, n))
			continue;
		if (p[i] != '-' || (i + 1 < n && p[i + 1] != ' ' && p[i + 1] != '\t'))
			break; /* the next key: the list ended */
		i = skip_blanks(p, i + 1, n);
		if ((r = scalar_at(p + i, n - i, "", &item, &used)) < 0)
			sb_printf(err, "line %d: %s: an unterminated quote", no, key);
		else if (!rest_empty(p, i + used, n))
			sb_printf(err, "line %d: %s: unexpected text after the item", no, key), r = -EINVAL;
		else
			r = push_item(out, &item, key, no, err);
	}
	sb_free(&item);
	return r;
}

/* The flow list starting at s (just after '['), possibly over several lines. */
static int flow_list(const char *s, const char *key, int no, struct strv *out, struct strbuf *err)
{
	struct strbuf item = {0};
	int r = 0;
	size_t n = strlen(s), i = 0, used;
	for (;;) {
		while (i < n && isspace((unsigned char)s[i]))
			no += s[i++] == '\n';
		if (i < n && s[i] == '#') { /* a comment to the end of its line */
			while (i < n && s[i] != '\n')
				i++;
			continue;
		}
		if (i >= n) {
			sb_printf(err, "line %d: %s: a list with no closing ']'", no, key);
			r = -EINVAL;
		} else if (s[i] == ']') {
			i = skip_blanks(s, i + 1, n);
			if (i < n && s[i] != '\n' && s[i] != '\r' && s[i] != '#')
				sb_printf(err, "line %d: %s: unexpected text after ']'", no, key), r = -EINVAL;
		} else if ((r = scalar_at(s + i, n - i, ",]\n\r", &item, &used)) < 0) {
			sb_printf(err, "line %d: %s: an unterminated quote", no, key);
		} else if ((r = push_item(out, &item, key, no, err)) == 0) {
			i = skip_blanks(s, i + used, n);
			if (i < n && s[i] == ',')
				i++;
			else if (i < n && s[i] != ']' && s[i] != '\n' && s[i] != '\r')
				sb_printf(err, "line %d: %s: expected ',' or ']' after an item", no, key), r = -EINVAL;
			continue;
		}
		break;
	}
	sb_free(&item);
	return r;
}

int yaml_list(const char *text, const char *key, struct strv *out, struct strbuf *err)
{
	int no;
	const char *v = find_key(text, key, &no), *next;
	if (!v)
		return 0;
	size_t n = line_at(v, &next), i = skip_blanks(v, 0, n);
	if (rest_empty(v, i, n))
		return block_list(next, key, no, out, err);
	if (v[i] == '[')
		return flow_list(v + i + 1, key, no, out, err);
	if ((n - i >= 1 && v[i] == '~' && rest_empty(v, i + 1, n)) ||
	    (n - i >= 4 && !strncmp(v + i, "null", 4) && rest_empty(v, i + 4, n)))
		return 0;
	sb_printf(err, "line %d: %s: expected a list ('- DIR' lines below it, or [DIR, ...])", no, key);
	return -EINVAL;
}

/* ---- properties ----------------------------------------------------------------------------- */

char *properties_value(const char *text, const char *key)
{
	size_t klen = strlen(key);
	for (const char *p = text, *next; p; p = next) {
		size_t n = line_at(p, &next), i = skip_blanks(p, 0, n);
		if (n - i < klen || strncmp(p + i, key, klen) != 0)
			continue;
		i = skip_blanks(p, i + klen, n);
		if (i >= n || p[i] != '=')
			continue;
		i = skip_blanks(p, i + 1, n);
		size_t e = n;
		while (e > i && (p[e - 1] == ' ' || p[e - 1] == '\t'))
			e--;
		return strndup(p + i, e - i);
	}
	return NULL;
}

/* ---- nodetool output ------------------------------------------------------------------------ */

/* For a line "LABEL<blanks>: VALUE", the value (trimmed) into v; false for other lines. */
static bool labelled(const char *p, size_t n, const char *label, const char **v, size_t *vlen)
{
	size_t l = strlen(label);
	if (n < l || strncmp(p, label, l) != 0)
		return false;
	size_t i = skip_blanks(p, l, n);
	if (i >= n || p[i] != ':')
		return false;
	i = skip_blanks(p, i + 1, n);
	while (n > i && isspace((unsigned char)p[n - 1]))
		n--;
	*v = p + i;
	*vlen = n - i;
	return true;
}

static bool printable_word(const char *s, size_t n, size_t max)
{
	if (!n || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] >= 0x7f || s[i] == ',')
			return false;
	return true;
}

char *nodetool_parse_version(const char *out)
{
	for (const char *p = out, *next; p; p = next) {
		size_t n = line_at(p, &next), vlen;
		const char *v;
		if (labelled(p, n, "ReleaseVersion", &v, &vlen))
			return printable_word(v, vlen, 64) ? strndup(v, vlen) : NULL;
	}
	return NULL;
}

int nodetool_parse_tokens(const char *out, struct strv *tokens)
{
	for (const char *p = out, *next; p; p = next) {
		size_t n = line_at(p, &next), vlen;
		const char *v;
		if (!labelled(p, n, "Token", &v, &vlen) || !printable_word(v, vlen, 256))
			continue; /* not a token line, or a remark such as "(node is not joined ...)" */
		_cleanup_free_ char *t = strndup(v, vlen);
		int r = t ? strv_push(tokens, t) : -ENOMEM;
		if (r < 0)
			return r;
	}
	return 0;
}

int tokens_parse_list(const char *text, struct strv *tokens, struct strbuf *err)
{
	size_t before = tokens->n;
	for (const char *p = text; *p;) {
		if (*p == '#') {
			p += strcspn(p, "\n");
			continue;
		}
		size_t n = strcspn(p, " \t\r\n,#");
		if (n == 0) {
			p++;
			continue;
		}
		if (!printable_word(p, n, 256)) {
			sb_printf(err, "token %zu is not one (printable ASCII, at most 256 bytes)",
				  tokens->n - before + 1);
			return -EINVAL;
		}
		_cleanup_free_ char *t = strndup(p, n);
		int r = t ? strv_push(tokens, t) : -ENOMEM;
		if (r < 0)
			return r;
		p += n;
	}
	if (tokens->n == before) {
		sb_puts(err, "no tokens in it");
		return -EINVAL;
	}
	return 0;
}

/* A label's value: at most 255 bytes, no control character. */
static char *label_dup(const char *v, size_t n)
{
	if (!n || n > 255)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < ' ' || v[i] == 0x7f)
			return NULL;
	return strndup(v, n);
}

/* *out = the value of a "LABEL : value" line, when it has none yet and the value is a label
 * (a word when word); left NULL otherwise (or out of memory: then unknown). */
static void take_label(const char *p, size_t n, const char *label, bool word, char **out)
{
	const char *v;
	size_t vlen;
	if (!*out && labelled(p, n, label, &v, &vlen) && (!word || printable_word(v, vlen, 64)))
		*out = label_dup(v, vlen);
}

/* A host id as the store keeps it (host_id_canonical): lower case, whatever nodetool's
 * spelling; left as printed when it is not a UUID at all. */
static void canonical_host_id(char *id)
{
	char canon[37];
	if (id && host_id_canonical(id, canon) == 0)
		memcpy(id, canon, sizeof(canon));
}

int nodetool_parse_info(const char *out, char **host_id, char **datacenter, char **rack)
{
	*host_id = *datacenter = *rack = NULL;
	for (const char *p = out, *next; p; p = next) {
		size_t n = line_at(p, &next);
		take_label(p, n, "ID", true, host_id);
		take_label(p, n, "Data Center", false, datacenter);
		take_label(p, n, "Rack", false, rack);
	}
	canonical_host_id(*host_id);
	return 0;
}

/* Whether the list "[a, b, c]" (s, n bytes) names address. */
static bool list_has(const char *s, size_t n, const char *address)
{
	size_t al = strlen(address);
	for (size_t i = 0; i < n;) {
		i = skip_blanks(s, i, n);
		if (i < n && (s[i] == '[' || s[i] == ','))
			i = skip_blanks(s, i + 1, n);
		size_t j = i;
		while (j < n && s[j] != ',' && s[j] != ']' && s[j] != ' ')
			j++;
		if (j - i == al && !strncmp(s + i, address, al))
			return true;
		if (j == i)
			j++;
		i = j;
	}
	return false;
}

int nodetool_parse_describecluster(const char *out, const char *address, char **cluster,
				   char **schema_version)
{
	*cluster = *schema_version = NULL;
	bool in_versions = false;
	size_t versions = 0;
	char *only = NULL;
	for (const char *p = out, *next; p; p = next) {
		size_t n = line_at(p, &next), i = skip_blanks(p, 0, n);
		const char *v;
		size_t vlen;
		if (!*cluster && labelled(p + i, n - i, "Name", &v, &vlen))
			*cluster = label_dup(v, vlen);
		if (i == n || p[i] == '\0') {
			in_versions = false;
			continue;
		}
		if (!strncmp(p + i, "Schema versions:", 16)) {
			in_versions = true;
			continue;
		}
		/* "UUID: [addresses]": a version is 36 bytes of hex and '-' */
		if (!in_versions || n - i < 38 || p[i + 36] != ':' || strspn(p + i, "0123456789abcdef-") != 36)
			continue;
		versions++;
		if (!only)
			only = strndup(p + i, 36);
		if (!*schema_version && address && list_has(p + i + 37, n - i - 37, address))
			*schema_version = strndup(p + i, 36);
	}
	if (!*schema_version && versions == 1) {
		*schema_version = only;
		only = NULL;
	}
	free(only);
	return 0;
}

static bool is_uuid(const char *s, size_t n)
{
	if (n != 36)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

void status_nodes_free(struct status_node *nodes, size_t n)
{
	for (size_t i = 0; nodes && i < n; i++) {
		free(nodes[i].host_id);
		free(nodes[i].address);
		free(nodes[i].datacenter);
		free(nodes[i].rack);
	}
	free(nodes);
}

/* One node row: "SS  ADDRESS  ...  HOSTID  RACK" into x (a string NULL: out of memory). false
 * when p is not one. */
static bool status_row(const char *p, size_t n, const char *dc, struct status_node *x)
{
	if (n < 4 || !strchr("UD", p[0]) || !strchr("NLJM", p[1]) || p[2] != ' ')
		return false;
	size_t i = skip_blanks(p, 2, n), a = i;
	while (i < n && p[i] != ' ' && p[i] != '\t')
		i++;
	size_t alen = i - a;
	for (size_t k = i; k + 36 <= n; k++) {
		if ((k && p[k - 1] != ' ') || !is_uuid(p + k, 36) || (k + 36 < n && p[k + 36] != ' '))
			continue;
		size_t r = skip_blanks(p, k + 36, n), e = n;
		while (e > r && isspace((unsigned char)p[e - 1]))
			e--;
		if (!alen)
			return false;
		x->address = label_dup(p + a, alen);
		x->host_id = strndup(p + k, 36);
		canonical_host_id(x->host_id);
		x->rack = e > r ? label_dup(p + r, e - r) : strdup("");
		x->datacenter = strdup(dc);
		return true;
	}
	return false;
}

int nodetool_parse_status(const char *out, struct status_node **nodes, size_t *n)
{
	char dc[256] = "";
	for (const char *p = out, *next; p; p = next) {
		size_t len = line_at(p, &next);
		if (len > 12 && !strncmp(p, "Datacenter: ", 12)) {
			_cleanup_free_ char *d = label_dup(p + 12, len - 12);
			snprintf(dc, sizeof(dc), "%s", d ? d : "");
			continue;
		}
		struct status_node x = {0};
		if (!status_row(p, len, dc, &x))
			continue;
		struct status_node *v = realloc(*nodes, (*n + 1) * sizeof(*v));
		if (!v || !x.address || !x.host_id || !x.rack || !x.datacenter) {
			free(x.address);
			free(x.host_id);
			free(x.rack);
			free(x.datacenter);
			if (v)
				*nodes = v;
			return -ENOMEM;
		}
		*nodes = v;
		v[(*n)++] = x;
	}
	return 0;
}
