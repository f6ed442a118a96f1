/* conf.h: /etc/cassbackup.conf (or --config FILE). Lines are "key = value"; '#' starts a
 * comment; a key may repeat (data_dir). Command-line flags override the file. Keys:
 *   store, data_dir, cassandra_conf, nodetool, nodetool_user, nodetool_password_file,
 *   sstableloader, sstableloader_user, sstableloader_password_file, hosts, load_state_dir,
 *   mount_helper, s3_endpoint, s3_region, s3_key_file, s3_ca_file, cache_dir, limit_upload,
 *   limit_download, s3_parallel, pack_size, metrics_file (metrics.h), hook_pre, hook_post,
 *   hook_failure (hooks.h), keep_last, keep_hourly, keep_daily, keep_weekly,
 *   keep_monthly, keep_yearly, keep_within, incremental_name, incremental_name_period
 *   (cmd_backup.c), schedule, randomized_delay, on_failure, incremental_schedule
 *   (cmd_install_timer.c), s3_sse, s3_sse_kms_key_id, s3_sse_c_key_file,
 *   s3_storage_class
 */
#ifndef CASSBACKUP_CONFIG_H
#define CASSBACKUP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define CONFIG_DEFAULT_PATH "/etc/cassbackup.conf"

/* Loads path. A missing file is an error only when must_exist (it was named with --config);
 * the null device is an empty configuration, any other file but a regular one an error.
 * On error, err says which line and why (lines counted as an editor does, blank ones too): a
 * line that is not "key = value", an unknown key, a key with no value.
 * Entries of an earlier call are kept. */
int config_load(const char *path, bool must_exist, struct strbuf *err);
const char *config_path(void); /* the file loaded, or NULL */

/* The last value of key, or NULL. */
const char *config_get(const char *key);
/* The same, and the line it is on (when line is not NULL). */
const char *config_get_at(const char *key, int *line);
/* Appends every value of key to (*v, *n); the strings belong to the configuration. 0 or
 * -ENOMEM (what was appended stays). */
int config_get_all(const char *key, char ***v, size_t *n);
/* Forgets what was loaded (for tests; config_load then starts afresh). */
void config_reset(void);

/* A program and its arguments from a configuration value (hook_pre...): words separated by
 * blanks; '...' keeps what it holds as it is, "..." too except \" and \\; outside quotes a
 * backslash keeps the next character. No shell runs it: no variables, globs or pipes. The
 * words are appended to out (strv_free). 0, or -EINVAL (an unterminated quote, no word at
 * all) / -ENOMEM with err saying why. */
struct strv;
int config_split_words(const char *value, struct strv *out, struct strbuf *err);

/* Every key and value, in file order, with line numbers, for validate-config. */
int config_each(int (*cb)(void *ctx, const char *key, const char *value, int line), void *ctx);

#endif
