/* schema_ddl.h: creating, on a target cluster, the keyspaces, types and tables a restore or a
 * load needs (restore --create-schema, load --create-schema), from the DDL the backup kept.
 *
 * The DDL is the backup's schema.cql (cqlsh DESCRIBE SCHEMA at backup time, manifest.h
 * node_files), else each table's schema.cql from its snapshot (tables and types only: their
 * keyspaces must then exist). The target is asked what it has (DESCRIBE SCHEMA); only what it
 * lacks is created, every statement with IF NOT EXISTS, through cqlsh -f. Nothing existing is
 * ever dropped or altered.
 */
#ifndef CASSBACKUP_SCHEMA_DDL_H
#define CASSBACKUP_SCHEMA_DDL_H

#include <stdbool.h>
#include <stddef.h>

#include "nodemeta.h"
#include "util.h"

enum ddl_kind { DDL_OTHER, DDL_KEYSPACE, DDL_TYPE, DDL_TABLE, DDL_INDEX };

/* One statement of a DDL text. Names as Cassandra has them: unquoted identifiers lowercased,
 * "quoted" ones as written. */
struct ddl_stmt {
	enum ddl_kind kind;
	char *keyspace; /* "" when the statement names none (DDL_OTHER) */
	char *name;     /* the keyspace's, type's, table's or index's own name ("" if unnamed) */
	char *table;    /* DDL_INDEX: the table it is on; else "" */
	char *text;     /* the statement, ';' included */
};

struct ddl {
	struct ddl_stmt *v;
	size_t n;
};

/* Splits text into statements (';' outside quotes, comments and $$ blocks). 0 or -ENOMEM. */
int ddl_parse(const char *text, struct ddl *out);
void ddl_free(struct ddl *d);
/* Is there a statement of kind naming keyspace[.name] in d? */
bool ddl_has(const struct ddl *d, enum ddl_kind kind, const char *keyspace, const char *name);
/* s->text with IF NOT EXISTS after CREATE <KIND> (when it has none), into out. */
int ddl_if_not_exists(const struct ddl_stmt *s, struct strbuf *out);

/* One table a restore or load brings back, with its snapshot's schema.cql (NULL: none). */
struct ddl_table {
	const char *keyspace, *table, *schema_cql;
};

struct schema_create {
	const struct cqlsh_conf *cqlsh;  /* how to reach the target */
	const char *backup_ddl;           /* the backup's schema.cql; NULL: it kept none */
	const struct ddl_table *tables;
	size_t ntables;
	bool dry_run;                     /* say what would be created; run nothing */
	bool to_stderr;                   /* say what is created on stderr (stdout is JSON) */
	bool created;                     /* out: something was (would be) created */
};

/* The schema.cql the node backup ref kept (cqlsh DESCRIBE SCHEMA), read back from store st and
 * checked against the SHA-256 its manifest records, into *text (malloc'd; NULL when it kept
 * none). 0, or the exit code after one line saying why. */
struct store;
int schema_read_backup_ddl(struct store *st, const char *ref, char **text);

/* Creates what the target lacks of sc's tables (and their keyspaces and types), printing one
 * line per keyspace, type or table created. 0, or the exit code after one line saying why
 * (nothing was created, or what cqlsh did before it failed is as it left it). */
int schema_create_missing(struct schema_create *sc);

#endif
