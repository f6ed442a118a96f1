/* cassandra_conf.h: what cassbackup reads from a Cassandra node: its configuration files
 * (cassandra.yaml, cassandra-rackdc.properties) and what nodetool prints (version, info -T).
 *
 * The YAML read here is the subset Cassandra's own cassandra.yaml uses for the keys we need:
 * top-level keys at column 0, "# comments" (a '#' at the start of a line or after a blank),
 * plain, 'single' and "double" quoted scalars, and lists either as a block
 *
 *     data_file_directories:
 *         - /var/lib/cassandra/data      # items indented or not, comments between them
 *
 * or as a flow list `[a, "b", 'c']` (which may continue over several lines). Anything else
 * where a list is expected is refused with the line number, not guessed at.
 * Everything here is pure: it parses text given to it and neither reads files nor prints.
 */
#ifndef CASSBACKUP_CASSANDRA_CONF_H
#define CASSBACKUP_CASSANDRA_CONF_H

#include <stddef.h>

#include "exec.h"
#include "util.h"

/* The value of a top-level scalar key ("cluster_name: 'Test Cluster'"), unquoted, as a malloc'd
 * string; NULL when the key is absent, commented out, empty or not a scalar (or on ENOMEM). */
char *yaml_scalar(const char *text, const char *key);

/* Appends the items of the top-level list key (data_file_directories) to out, in order.
 * 0 (nothing appended when the key is absent, commented out, null or an empty list), -EINVAL
 * with err saying which line and what is wrong, or -ENOMEM. */
int yaml_list(const char *text, const char *key, struct strv *out, struct strbuf *err);

/* The value of "key=value" in a Java properties file (cassandra-rackdc.properties), trimmed;
 * NULL when absent. */
char *properties_value(const char *text, const char *key);

/* From `nodetool version` output ("ReleaseVersion: 4.1.3"): the version, malloc'd; NULL when
 * there is no such line or the value is not a printable word of at most 64 bytes. */
char *nodetool_parse_version(const char *out);

/* From `nodetool info -T` output: each "Token : VALUE" line's VALUE appended to tokens. Lines
 * whose value is a remark in parentheses ("(node is not joined to the cluster)") are not
 * tokens. 0 (tokens may be empty) or -ENOMEM. */
int nodetool_parse_tokens(const char *out, struct strv *tokens);

/* From `nodetool info` output: the "ID", "Data Center" and "Rack" values, each malloc'd, or
 * left NULL when absent or not printable (at most 255 bytes, no control character; an ID a
 * word of at most 64 bytes). 0 or -ENOMEM. */
int nodetool_parse_info(const char *out, char **host_id, char **datacenter, char **rack);

/* From `nodetool describecluster` output: the cluster's name ("Name: ..." under "Cluster
 * Information:") and the schema version the node at address holds (of the "UUID: [addr, ...]"
 * lines under "Schema versions:"; the only one when address is in none), each malloc'd or NULL
 * when unknown. 0 or -ENOMEM. */
int nodetool_parse_describecluster(const char *out, const char *address, char **cluster,
				   char **schema_version);

/* One node of `nodetool status`. */
struct status_node {
	char *host_id, *address, *datacenter, *rack;
};
/* From `nodetool status` output: every node row ("UN  10.0.0.1  1.2 GiB  16  ?  HOSTID  RACK")
 * with the datacenter of the "Datacenter: X" header above it, appended to *nodes (*n of them).
 * A row without a host id (a node still joining) is left out. 0 or -ENOMEM. */
int nodetool_parse_status(const char *out, struct status_node **nodes, size_t *n);
void status_nodes_free(struct status_node *nodes, size_t n);

/* Tokens as a --tokens FILE gives them: separated by blanks, newlines or commas, each printable
 * ASCII of at most 256 bytes; '#' starts a comment to the end of the line. 0, -EINVAL with err
 * saying what is wrong (none, or a bad one), or -ENOMEM. */
int tokens_parse_list(const char *text, struct strv *tokens, struct strbuf *err);

#endif
