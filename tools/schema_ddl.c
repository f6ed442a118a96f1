/* schema_ddl.c: see schema_ddl.h. */
#include "schema_ddl.h"
#include "cli.h"
#include "manifest.h"
#include "readback.h"
#include "store.h"
#include "tmpdir.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- parsing ------------------------------------------------------------------------------ */

/* The end of the statement starting at p: just past its ';', or the end of the text. */
static const char *stmt_end(const char *p)
{
	while (*p) {
		if (*p == '\'' || *p == '"') { /* a string or quoted name; doubled quote escapes */
			char q = *p++;
			while (*p && !(*p == q && p[1] != q))
				p += *p == q ? 2 : 1;
			p += *p != 0;
		} else if (p[0] == '$' && p[1] == '$') {
			const char *e = strstr(p + 2, "$$");
			p = e ? e + 2 : p + strlen(p);
		} else if ((p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '/')) {
			p += strcspn(p, "\n");
		} else if (p[0] == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");
			p = e ? e + 2 : p + strlen(p);
		} else if (*p++ == ';') {
			return p;
		}
	}
	return p;
}

/* Skips blanks and comments. */
static const char *skip_blank(const char *p)
{
	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if ((p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '/'))
			p += strcspn(p, "\n");
		else if (p[0] == '/' && p[1] == '*')
			p = strstr(p + 2, "*/") ? strstr(p + 2, "*/") + 2 : p + strlen(p);
		else
			return p;
	}
}

/* The keyword kw (case-insensitive, whole word) at p: past it and blanks, else NULL. */
static const char *keyword(const char *p, const char *kw)
{
	size_t n = strlen(kw);
	if (strncasecmp(p, kw, n) || isalnum((unsigned char)p[n]) || p[n] == '_')
		return NULL;
	return skip_blank(p + n);
}

/* An identifier at *p: "quoted" (doubled quotes) as written, else [A-Za-z0-9_]+ lowercased. */
static char *ident(const char **p)
{
	const char *s = *p;
	struct strbuf b = {0};
	if (*s == '"') {
		for (s++; *s && !(*s == '"' && s[1] != '"'); s += *s == '"' ? 2 : 1)
			sb_append(&b, s, 1);
		if (*s != '"') {
			sb_free(&b);
			return NULL;
		}
		s++;
	} else {
		for (; isalnum((unsigned char)*s) || *s == '_'; s++) {
			char c = (char)tolower((unsigned char)*s);
			sb_append(&b, &c, 1);
		}
	}
	if (!b.len) {
		sb_free(&b);
		return NULL;
	}
	*p = skip_blank(s);
	return b.buf;
}

/* [keyspace.]name at *p into ks (NULL when unqualified) and name. */
static int qualified(const char **p, char **ks, char **name)
{
	char *a = ident(p);
	if (!a)
		return -EINVAL;
	if (**p != '.') {
		*ks = NULL;
		*name = a;
		return 0;
	}
	*p = skip_blank(*p + 1);
	char *b = ident(p);
	if (!b) {
		free(a);
		return -EINVAL;
	}
	*ks = a;
	*name = b;
	return 0;
}

static char *dup0(char *s) { return s ? s : strdup(""); }

/* What statement text says it creates, into s (kind DDL_OTHER when it is no CREATE we know). */
static void classify(const char *text, struct ddl_stmt *s)
{
	const char *p = keyword(skip_blank(text), "CREATE"), *q;
	char *ks = NULL, *name = NULL, *tks = NULL, *table = NULL;
	enum ddl_kind k = DDL_OTHER;
	if (p && (q = keyword(p, "CUSTOM")))
		p = q;
	if (!p)
		goto out;
	if ((q = keyword(p, "KEYSPACE")))
		k = DDL_KEYSPACE;
	else if ((q = keyword(p, "TABLE")) || (q = keyword(p, "COLUMNFAMILY")))
		k = DDL_TABLE;
	else if ((q = keyword(p, "TYPE")))
		k = DDL_TYPE;
	else if ((q = keyword(p, "INDEX")))
		k = DDL_INDEX;
	if (k == DDL_OTHER)
		goto out;
	p = q;
	const char *ine = keyword(p, "IF");
	if (ine && (ine = keyword(ine, "NOT")) && (ine = keyword(ine, "EXISTS")))
		p = ine;
	if (k == DDL_INDEX) {
		if (!keyword(p, "ON") && qualified(&p, &ks, &name) < 0)
			k = DDL_OTHER;
		if (k == DDL_INDEX && (!(p = keyword(p, "ON")) || qualified(&p, &tks, &table) < 0 || !tks))
			k = DDL_OTHER;
		free(ks);
		ks = tks;
		tks = NULL;
	} else if (qualified(&p, &ks, &name) < 0 || (k == DDL_KEYSPACE ? ks != NULL : ks == NULL)) {
		k = DDL_OTHER; /* a table or type named without its keyspace: not from DESCRIBE */
	}
	if (k == DDL_KEYSPACE) {
		ks = name;
		name = strdup(ks);
	}
out:
	if (k == DDL_OTHER) {
		free(ks);
		free(name);
		free(table);
		ks = name = table = NULL;
	}
	free(tks);
	s->kind = k;
	s->keyspace = dup0(ks);
	s->name = dup0(name);
	s->table = dup0(table);
}

int ddl_parse(const char *text, struct ddl *out)
{
	*out = (struct ddl){0};
	for (const char *p = skip_blank(text); *p; p = skip_blank(p)) {
		const char *e = stmt_end(p);
		struct ddl_stmt *v = realloc(out->v, (out->n + 1) * sizeof(*v));
		if (!v) {
			ddl_free(out);
			return -ENOMEM;
		}
		out->v = v;
		struct ddl_stmt *s = &v[out->n++];
		*s = (struct ddl_stmt){.text = strndup(p, (size_t)(e - p))};
		if (s->text)
			classify(s->text, s);
		if (!s->text || !s->keyspace || !s->name || !s->table) {
			ddl_free(out);
			return -ENOMEM;
		}
		p = e;
	}
	return 0;
}

void ddl_free(struct ddl *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->v[i].keyspace);
		free(d->v[i].name);
		free(d->v[i].table);
		free(d->v[i].text);
	}
	free(d->v);
	*d = (struct ddl){0};
}

bool ddl_has(const struct ddl *d, enum ddl_kind kind, const char *keyspace, const char *name)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].kind == kind && !strcmp(d->v[i].keyspace, keyspace) &&
		    (!name || !strcmp(d->v[i].name, name)))
			return true;
	return false;
}

int ddl_if_not_exists(const struct ddl_stmt *s, struct strbuf *out)
{
	const char *p = keyword(skip_blank(s->text), "CREATE"), *q;
	if (p && (q = keyword(p, "CUSTOM")))
		p = q;
	static const char *const kinds[] = {"KEYSPACE", "TABLE", "COLUMNFAMILY", "TYPE", "INDEX"};
	for (size_t i = 0; p && i < sizeof(kinds) / sizeof(*kinds); i++) {
		if (!(q = keyword(p, kinds[i])))
			continue;
		const char *ine = keyword(q, "IF");
		if (ine && keyword(ine, "NOT"))
			break; /* has it */
		return sb_printf(out, "%.*sIF NOT EXISTS %s", (int)(q - s->text), s->text, q);
	}
	return sb_puts(out, s->text);
}

/* --- creating ----------------------------------------------------------------------------- */

/* Keyspaces every node has, which DESCRIBE SCHEMA does not print. */
static bool system_keyspace(const char *ks)
{
	return !strcmp(ks, "system") || !strncmp(ks, "system_", 7);
}

/* The statements of src for what the target (have) lacks, with IF NOT EXISTS, into out; what
 * they create into said (one line each). A keyspace the DDL lacks and the target too is named
 * in missing_ks. */
struct wanted {
	struct strbuf cql, said, missing_ks;
	bool dry_run;
};

/* Adds s; what ("keyspace shop", NULL: nothing to say) to what is said. */
static int want(struct wanted *w, const struct ddl_stmt *s, const char *what)
{
	int r = ddl_if_not_exists(s, &w->cql) ?: sb_puts(&w->cql, "\n");
	if (r == 0 && what)
		r = sb_printf(&w->said, "%s %s\n", w->dry_run ? "would create" : "created", what);
	return r;
}

static bool seen_keyspace(const struct schema_create *sc, size_t upto, const char *ks)
{
	for (size_t i = 0; i < upto; i++)
		if (!strcmp(sc->tables[i].keyspace, ks))
			return true;
	return false;
}

/* For keyspace ks: its CREATE KEYSPACE and types when the target lacks them. */
static int want_keyspace(const struct ddl *src, const struct ddl *have, const char *ks,
			 struct wanted *w)
{
	int r = 0;
	char line[600];
	bool ks_there = system_keyspace(ks) || ddl_has(have, DDL_KEYSPACE, ks, NULL);
	if (!ks_there) {
		bool found = false;
		for (size_t j = 0; r == 0 && j < src->n; j++)
			if (src->v[j].kind == DDL_KEYSPACE && !strcmp(src->v[j].keyspace, ks)) {
				snprintf(line, sizeof(line), "keyspace %s", ks);
				r = want(w, &src->v[j], line);
				found = true;
			}
		if (r == 0 && !found)
			r = sb_printf(&w->missing_ks, "%s%s", w->missing_ks.len ? ", " : "", ks);
	}
	for (size_t j = 0; r == 0 && j < src->n; j++) /* types may serve any table */
		if (src->v[j].kind == DDL_TYPE && !strcmp(src->v[j].keyspace, ks) &&
		    (!ks_there || !ddl_has(have, DDL_TYPE, ks, src->v[j].name))) {
			snprintf(line, sizeof(line), "type %s.%s", ks, src->v[j].name);
			r = want(w, &src->v[j], line);
		}
	return r;
}

/* The table's CREATE TABLE (and indexes) from src when the target lacks it. */
static int want_table(const struct ddl *src, const struct ddl *have, const struct ddl_table *t,
		      struct wanted *w)
{
	if (system_keyspace(t->keyspace) || ddl_has(have, DDL_TABLE, t->keyspace, t->table))
		return 0;
	int r = 0;
	char line[600];
	for (size_t j = 0; r == 0 && j < src->n; j++) {
		const struct ddl_stmt *s = &src->v[j];
		if (s->kind == DDL_TABLE && !strcmp(s->keyspace, t->keyspace) && !strcmp(s->name, t->table)) {
			snprintf(line, sizeof(line), "table %s.%s", t->keyspace, t->table);
			r = want(w, s, line);
		} else if (s->kind == DDL_INDEX && !strcmp(s->keyspace, t->keyspace) &&
			   !strcmp(s->table, t->table)) {
			r = want(w, s, NULL);
		}
	}
	return r;
}

/* The target's schema, as cqlsh describes it. 0 or the exit code (said). */
static int describe_target(const struct schema_create *sc, struct ddl *have)
{
	char *out = NULL;
	struct strbuf why = {0};
	int r = cqlsh_run(sc->cqlsh, "DESCRIBE SCHEMA", NULL, &out, &why);
	if (r != 0)
		errorf("cannot read the target's schema: %s; nothing was created or restored",
		       why.len ? why.buf : strerror(r < 0 ? -r : EIO));
	else if (ddl_parse(out, have) < 0)
		errorf("out of memory");
	free(out);
	sb_free(&why);
	return r != 0 ? CB_EXIT_FAILED : 0;
}

/* Runs the statements through cqlsh -f. 0 or the exit code (said). */
static int run_statements(const struct schema_create *sc, const struct strbuf *cql)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/cassbackup-schema-XXXXXX", tmpdir_root());
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, cql->buf, cql->len) != (ssize_t)cql->len || close(fd) < 0) {
		errorf("cannot write %s: %s; nothing was created or restored", path, strerror(errno));
		if (fd >= 0)
			unlink(path);
		return CB_EXIT_FAILED;
	}
	char *out = NULL;
	struct strbuf why = {0};
	int r = cqlsh_run(sc->cqlsh, NULL, path, &out, &why);
	unlink(path);
	if (r != 0)
		errorf("cannot create the schema: %s; nothing was restored", why.len ? why.buf : strerror(EIO));
	free(out);
	sb_free(&why);
	return r != 0 ? CB_EXIT_FAILED : 0;
}

/* The DDL a restore creates from: the backup's, else the tables' own schema.cql. */
static int source_ddl(const struct schema_create *sc, struct ddl *src)
{
	if (sc->backup_ddl)
		return ddl_parse(sc->backup_ddl, src);
	struct strbuf all = {0};
	int r = 0;
	for (size_t i = 0; r == 0 && i < sc->ntables; i++)
		if (sc->tables[i].schema_cql)
			r = sb_printf(&all, "%s\n", sc->tables[i].schema_cql);
	r = r ?: ddl_parse(all.buf ? all.buf : "", src);
	sb_free(&all);
	return r;
}

int schema_create_missing(struct schema_create *sc)
{
	struct ddl src = {0}, have = {0};
	struct wanted w = {.dry_run = sc->dry_run};
	int rc = describe_target(sc, &have);
	if (rc == 0 && source_ddl(sc, &src) < 0) {
		errorf("out of memory");
		rc = CB_EXIT_FAILED;
	}
	int r = 0;
	for (size_t i = 0; rc == 0 && r == 0 && i < sc->ntables; i++) {
		const struct ddl_table *t = &sc->tables[i];
		if (!seen_keyspace(sc, i, t->keyspace))
			r = want_keyspace(&src, &have, t->keyspace, &w);
		r = r ?: want_table(&src, &have, t, &w);
	}
	if (rc == 0 && r < 0) {
		errorf("out of memory");
		rc = CB_EXIT_FAILED;
	}
	if (rc == 0 && w.missing_ks.len) {
		errorf("keyspace %s: not on the target, and the backup has no CREATE KEYSPACE for it%s; "
		       "create it first; nothing was created or restored", w.missing_ks.buf,
		       sc->backup_ddl ? "" : " (it kept no keyspace DDL: made without cqlsh)");
		rc = CB_EXIT_FAILED;
	} else if (rc == 0 && !sc->backup_ddl && w.cql.len) {
		errorf("warning: the backup has no keyspace DDL (made without cqlsh): tables and types "
		       "come from each table's schema.cql, in keyspaces that exist");
	}
	if (rc == 0 && w.cql.len && !sc->dry_run)
		rc = run_statements(sc, &w.cql);
	sc->created = rc == 0 && w.cql.len;
	FILE *say = sc->to_stderr ? stderr : stdout;
	if (rc == 0 && w.said.len)
		fputs(w.said.buf, say);
	else if (rc == 0)
		fprintf(say, "the target has every keyspace and table restored: no schema created\n");
	ddl_free(&src);
	ddl_free(&have);
	sb_free(&w.cql);
	sb_free(&w.said);
	sb_free(&w.missing_ks);
	return rc;
}

static int append_bytes(void *ctx, const void *data, size_t len)
{
	return sb_append(ctx, data, len);
}

int schema_read_backup_ddl(struct store *st, const char *ref, char **text)
{
	*text = NULL;
	struct manifest *m = NULL;
	struct strbuf err = {0}, ddl = {0};
	readback *rb = NULL;
	int rc = 0;
	if (store_read_manifest(st, ref, &m, NULL, &err) < 0) {
		errorf("cannot read backup %s: %s", ref, err.buf ? err.buf : "");
		rc = CB_EXIT_FAILED;
	}
	const struct manifest_file *f = m ? manifest_node_file(m, "", MANIFEST_SCHEMA_FILE) : NULL;
	struct cb_blob_loc loc;
	int r = f ? catalog_blob_location(store_catalog(st), f->sha256, f->size, &loc) : 0;
	if (f && (r <= 0 || !loc.pack_path[0])) {
		errorf("cannot read the schema.cql of backup %s: no pack of the store holds its bytes", ref);
		rc = CB_EXIT_FAILED;
	} else if (f && readback_new(st, NULL, &rb) < 0) {
		errorf("out of memory");
		rc = CB_EXIT_FAILED;
	}
	struct readback_result res;
	if (rc == 0 && f && (r = readback_pack(rb, &loc, f->size, f->sha256, append_bytes, &ddl, &res)) < 0) {
		errorf("cannot read the schema.cql of backup %s: %s", ref, *res.why ? res.why : strerror(-r));
		rc = CB_EXIT_FAILED;
	}
	if (rc == 0 && f) {
		*text = ddl.buf ? ddl.buf : strdup("");
		ddl = (struct strbuf){0};
	}
	readback_free(rb);
	sb_free(&ddl);
	sb_free(&err);
	manifest_free(m);
	return rc;
}
