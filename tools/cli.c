/* cli.c: see cli.h. */
#include "cli.h"
#include "lock.h"
#include "manifest.h"
#include "store.h"
#include "ttypass.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* ---- exit codes and messages ------------------------------------------------------------ */

int exit_code_for(int r)
{
	if (r == -ENOKEY || r == -EKEYREJECTED)
		return CB_EXIT_USAGE;
	return r == -ENOENT || r == -ENOTDIR || r == -EMEDIUMTYPE ? CB_EXIT_MISSING : CB_EXIT_FAILED;
}

void errorf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("cassbackup: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int sb_escape(struct strbuf *sb, const char *s)
{
	int r = 0;
	for (const unsigned char *p = (const unsigned char *)s; r == 0 && p && *p; p++) {
		if (*p == '\\')
			r = sb_append(sb, "\\\\", 2);
		else if (*p == '\n')
			r = sb_append(sb, "\\n", 2);
		else if (*p == '\t')
			r = sb_append(sb, "\\t", 2);
		else if (*p < 0x20 || *p == 0x7f)
			r = sb_printf(sb, "\\x%02x", *p);
		else
			r = sb_append(sb, p, 1);
	}
	return r < 0 ? r : sb_append(sb, "", 0);
}

char *cli_escape(const char *s)
{
	struct strbuf sb = {0};
	if (sb_escape(&sb, s) < 0) {
		sb_free(&sb);
		return NULL;
	}
	return sb.buf;
}

/* --key-file FILE (config key_file): added to the table of every command; the key file of
 * an encrypted store (a plain store ignores it). Never the key itself on the line. */
static const char *key_file, *passphrase_file;
static struct cb_s3_options s3_settings;
static struct store_options store_settings = {.s3 = &s3_settings};

struct store_options *cli_store_settings(void) { return &store_settings; }
struct cb_s3_options *cli_s3_settings(void) { return &s3_settings; }

/* SQLite says "read-only" when it may not write the files a WAL catalog needs (also to read
 * it); on a file system that is not read-only, that is a permission problem. */
static int permission_or_rofs(const char *location, int r)
{
	struct statvfs vfs;
	if (r == -EROFS && !cb_location_is_remote(location) && statvfs(location, &vfs) == 0 &&
	    !(vfs.f_flag & ST_RDONLY))
		return -EACCES;
	return r;
}

int cli_store_open(const char *location, int flags, struct store **out)
{
	return cli_store_open_key(location, flags, store_settings.key_file, out);
}

/* The passphrase typed for an encrypted store this run (one prompt per run: copy between two
 * stores opened by the same passphrase asks once); freed at exit. */
static struct crypt_secret *typed_passphrase;

static void free_typed_passphrase(void) { crypt_secret_free(typed_passphrase); }

static const char *no_prompt_why; /* cli_no_prompt */

void cli_no_prompt(const char *why) { no_prompt_why = why; }

/* An encrypted store opened with neither key file nor passphrase file, by a person at a
 * terminal: asks for its passphrase. 0 (store_settings.passphrase set), or -errno said. */
static int prompt_passphrase(const char *shown)
{
	if (typed_passphrase)
		return 0;
	struct strbuf err = {0}, prompt = {0};
	int r = sb_printf(&prompt, "passphrase of store %s: ", shown);
	r = r ?: tty_read_secret(prompt.buf, CRYPT_PASSPHRASE_MIN, &typed_passphrase, &err);
	if (r < 0)
		errorf("store %s is encrypted: %s", shown, err.len ? err.buf : strerror(-r));
	else
		atexit(free_typed_passphrase);
	store_settings.passphrase = typed_passphrase;
	sb_free(&err);
	sb_free(&prompt);
	return r;
}

int cli_store_open_key(const char *location, int flags, const char *key_file, struct store **out)
{
	struct strbuf err = {0};
	struct store_options o = store_settings;
	o.flags = flags;
	o.key_file = key_file;
	int r = permission_or_rofs(location, store_open(location, &o, out, &err));
	bool can_ask = !key_file && !o.passphrase_file && !o.passphrase && !no_prompt_why &&
		       tty_can_prompt();
	if (r == -ENOKEY && can_ask) {
		_cleanup_free_ char *shown = cli_escape(location);
		if (prompt_passphrase(shown ? shown : "") < 0) {
			sb_free(&err);
			return exit_code_for(-ENOKEY);
		}
		sb_free(&err);
		o.passphrase = typed_passphrase;
		r = permission_or_rofs(location, store_open(location, &o, out, &err));
	}
	if (r < 0) {
		_cleanup_free_ char *shown = cli_escape(location);
		/* a local permission; object storage's refusals say what S3 refused, not who we are */
		if (r == -ENOKEY && !key_file && !o.passphrase_file && !o.passphrase && no_prompt_why)
			errorf("store %s is encrypted: %s", shown ? shown : "", no_prompt_why);
		else if (r == -ENOKEY && !key_file && !o.passphrase_file && !o.passphrase)
			errorf("store %s is encrypted: give --key-file or key_file in the config (a "
			       "passphrase: --passphrase-file, or type it at a terminal)", shown ? shown : "");
		else if ((r == -EACCES || r == -EPERM) && !cb_location_is_remote(location))
			errorf("cannot open store %s: permission denied for user id %u%s%s", shown ? shown : "",
			       (unsigned)geteuid(), err.len ? ": " : "", err.len ? err.buf : "");
		else
			errorf("cannot open store %s: %s", shown ? shown : "", err.buf ? err.buf : strerror(-r));
	}
	const char *why = r == 0 ? store_temporary_catalog(*out) : NULL;
	_cleanup_free_ char *said = cli_escape(why);
	_cleanup_free_ char *temp = why ? cli_escape(store_catalog_path(*out)) : NULL;
	if (why)
		errorf("note: catalog %s; this run keeps a temporary one, read from the store (%s)",
		       said ? said : "", temp ? temp : "");
	sb_free(&err);
	/* -EINVAL: a setting the store cannot open with (a location, an endpoint, credentials) */
	return r == -EINVAL ? CB_EXIT_USAGE : r < 0 ? exit_code_for(r) : 0;
}

static void say_waiting(void *ctx, const struct lock_info *h)
{
	(void)ctx;
	_cleanup_free_ char *cmd = cli_escape(h->command), *host = cli_escape(h->host);
	errorf("waiting for the %s lock of %s (pid %lld on %s)%s", h->exclusive ? "exclusive" : "shared",
	       cmd ? cmd : "", (long long)h->pid, host ? host : "",
	       h->pending_write ? ", left until it lapses: a write of its failed without an answer" : "");
}

int cli_store_lock(struct store *s, const char *location, bool exclusive, const char *command,
		   int wait_seconds, struct store_lock **out)
{
	struct lock_info h;
	int r = store_lock_take(store_backend(s), exclusive, command, wait_seconds, say_waiting, NULL,
				out, &h);
	_cleanup_free_ char *shown = cli_escape(location);
	if (r == -EROFS) {
		*out = NULL;
		return 0;
	}
	if (r == -EBUSY) {
		_cleanup_free_ char *cmd = cli_escape(h.command), *host = cli_escape(h.host);
		errorf("store %s is locked by %s (pid %lld on %s); try again later, or 'cassbackup "
		       "unlock' if that process is gone", shown ? shown : "", cmd ? cmd : "",
		       (long long)h.pid, host ? host : "");
	} else if (r < 0) {
		errorf("cannot lock store %s: %s", shown ? shown : "",
		       *cb_backend_last_error() ? cb_backend_last_error() : strerror(-r));
	}
	return r;
}

size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t *row = malloc((lb + 1) * sizeof(*row));
	if (!row)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	size_t d = row[lb];
	free(row);
	return d;
}

size_t closest_names(const char *name, const char *const *cand, size_t n, const char **out,
		     size_t max)
{
	size_t limit = strlen(name) / 3 > 2 ? strlen(name) / 3 : 2;
	size_t got = 0;
	size_t dist[max ? max : 1];
	for (size_t i = 0; i < n && max; i++) {
		size_t d = edit_distance(name, cand[i]);
		if (d > limit || d == 0)
			continue;
		/* insertion into the sorted (stable) list of the best max */
		size_t at = got;
		while (at > 0 && dist[at - 1] > d)
			at--;
		if (at >= max)
			continue;
		size_t end = got < max ? got : max - 1;
		memmove(&out[at + 1], &out[at], (end - at) * sizeof(*out));
		memmove(&dist[at + 1], &dist[at], (end - at) * sizeof(*dist));
		out[at] = cand[i];
		dist[at] = d;
		if (got < max)
			got++;
	}
	return got;
}

static int collect_name(void *ctx, const struct cb_backup_summary *b)
{
	struct strv *names = ctx;
	return strv_push(names, b->name);
}

/* Where why (the manifests the store's reconcile could not read: "backups/X.json: reason;
 * ...") names backup name's, backups/name.json or backups/name/NODE.json; NULL if nowhere. */
static const char *skipped_manifest_of(const char *why, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = why; (p = strstr(p, "backups/")); p++) {
		const char *q = p + strlen("backups/");
		if (strncmp(q, name, n))
			continue;
		q += n;
		const char *json = strstr(q, ".json:");
		if (q == json || (*q == '/' && json && !memchr(q + 1, '/', (size_t)(json - q - 1))))
			return p;
	}
	return NULL;
}

int report_unreadable_backup(struct store *st, const char *store, const char *name)
{
	unsigned skipped;
	const char *at = skipped_manifest_of(store_skipped_manifests(st, &skipped), name);
	if (!at)
		return 0;
	const char *end = strstr(at + 1, "; backups/");
	_cleanup_free_ char *what = strndup(at, end ? (size_t)(end - at) : strlen(at));
	_cleanup_free_ char *shown = cli_escape(name), *s = cli_escape(store),
			    *said = cli_escape(what ? what : "");
	errorf("backup %s of %s cannot be read: %s (cassbackup check tells more)", shown ? shown : "",
	       s ? s : "", said ? said : "");
	return CB_EXIT_FAILED;
}

int no_pack_holds_words(struct store *st, struct strbuf *out)
{
	char why[512];
	unsigned n = store_packs_unread(st, why);
	_cleanup_free_ char *said = cli_escape(why);
	if (n)
		return sb_printf(out, "its bytes are in no pack the catalog knows: %u pack%s of the "
				 "store could not be read (%s); 'cassbackup check' tells more", n,
				 n == 1 ? "" : "s", said ? said : "");
	return sb_puts(out, "its bytes are in no pack of the store (a pack is missing; 'cassbackup "
			    "check' tells more)");
}

void say_no_pack_holds(struct store *st, const char *name, const char *path)
{
	struct strbuf words = {0};
	no_pack_holds_words(st, &words);
	errorf("backup %s: %s: %s", name, path, words.buf ? words.buf : "out of memory");
	sb_free(&words);
}

int report_no_such_backup(struct store *st, const char *store, const char *name)
{
	int rc = report_unreadable_backup(st, store, name);
	if (rc) /* there, but its manifest could not be read: not "no such backup" */
		return rc;
	catalog *cat = store_catalog(st);
	struct strv names = {0};
	const char *best[3];
	size_t n = 0;
	if (catalog_list_backups(cat, collect_name, &names) == 0)
		n = closest_names(name, (const char *const *)names.v, names.n, best, ARRAY_SIZE(best));
	struct strbuf msg = {0};
	sb_puts(&msg, "backup ");
	sb_escape(&msg, name);
	sb_puts(&msg, ": no such backup in ");
	sb_escape(&msg, store);
	for (size_t i = 0; i < n; i++) {
		sb_puts(&msg, i ? ", " : "; closest: ");
		sb_escape(&msg, best[i]);
	}
	errorf("%s", msg.buf ? msg.buf : "out of memory");
	sb_free(&msg);
	strv_free(&names);
	return CB_EXIT_MISSING;
}

/* ---- parsers ------------------------------------------------------------------------------ */

int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out, struct strbuf *err)
{
	const char *p = s;
	uint64_t v;
	int r = parse_digits(&p, &v);
	if (r == -EINVAL || (r == 0 && *p)) {
		sb_printf(err, "not a whole number");
		return -EINVAL;
	}
	if (r == -ERANGE || v < min || (max && v > max)) {
		if (max)
			sb_printf(err, "must be from %llu to %llu", (unsigned long long)min,
				  (unsigned long long)max);
		else
			sb_printf(err, "must be at least %llu", (unsigned long long)min);
		return -ERANGE;
	}
	*out = v;
	return 0;
}

/* Adds n units of u to d. 0, -EINVAL (unknown unit) or -ERANGE. */
static int duration_add(struct duration *d, uint64_t n, const char *u, size_t ul)
{
	static const struct { const char *unit; size_t off; uint32_t mul; } units[] = {
		{"y", offsetof(struct duration, years), 1},
		{"m", offsetof(struct duration, months), 1},
		{"w", offsetof(struct duration, days), 7},
		{"d", offsetof(struct duration, days), 1},
		{"h", offsetof(struct duration, hours), 1},
		{"min", offsetof(struct duration, minutes), 1},
		{"s", offsetof(struct duration, seconds), 1},
	};
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strlen(units[i].unit) != ul || strncmp(u, units[i].unit, ul))
			continue;
		uint32_t *f = (uint32_t *)((char *)d + units[i].off);
		if (n > (UINT32_MAX - *f) / units[i].mul)
			return -ERANGE;
		*f += (uint32_t)n * units[i].mul;
		return 0;
	}
	return -EINVAL;
}

int parse_duration(const char *s, struct duration *out, struct strbuf *err)
{
	struct duration d = {0};
	const char *p = s;
	if (!*p) {
		sb_printf(err, "empty duration");
		return -EINVAL;
	}
	while (*p) {
		uint64_t n;
		int r = parse_digits(&p, &n);
		const char *u = p;
		while (isalpha((unsigned char)*p))
			p++;
		if (r == 0 && p == u)
			r = -EINVAL;
		if (r == 0)
			r = duration_add(&d, n, u, (size_t)(p - u));
		if (r == -ERANGE) {
			sb_printf(err, "too large");
			return r;
		}
		if (r < 0) {
			sb_printf(err, "not a duration (numbers with units y, m (months), w, d, h, min, s, "
				  "e.g. 7d, 1y2m, 12h30min)");
			return r;
		}
	}
	*out = d;
	return 0;
}

bool backup_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 200 || s[0] == '.' || s[0] == '-')
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@+-") == n;
}

/* ---- selection ---------------------------------------------------------------------------- */

static int selection_push(struct selection *s, const char *ks, size_t kslen, const char *table)
{
	struct selection_entry *v = realloc(s->v, (s->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	s->v = v;
	struct selection_entry e = {.keyspace = strndup(ks, kslen), .table = table ? strdup(table) : NULL};
	if (!e.keyspace || (table && !e.table)) {
		free(e.keyspace);
		free(e.table);
		return -ENOMEM;
	}
	v[s->n++] = e;
	return 0;
}

/* A Cassandra keyspace or table name: letters, digits, underscores (CQL's rule for both). */
static bool cql_name(const char *s, size_t n)
{
	if (!n || n > 222)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

int selection_add_keyspace(struct selection *s, const char *ks, struct strbuf *err)
{
	if (!cql_name(ks, strlen(ks))) {
		sb_printf(err, "not a keyspace name (letters, digits and _)");
		return -EINVAL;
	}
	int r = selection_push(s, ks, strlen(ks), NULL);
	if (r < 0)
		sb_puts(err, strerror(-r));
	return r;
}

int selection_add_table(struct selection *s, const char *ks_table, struct strbuf *err)
{
	const char *dot = strchr(ks_table, '.');
	if (!dot || !cql_name(ks_table, (size_t)(dot - ks_table)) || !cql_name(dot + 1, strlen(dot + 1))) {
		sb_printf(err, "expected KEYSPACE.TABLE");
		return -EINVAL;
	}
	int r = selection_push(s, ks_table, (size_t)(dot - ks_table), dot + 1);
	if (r < 0)
		sb_puts(err, strerror(-r));
	return r;
}

bool selection_is_empty(const struct selection *s)
{
	return s->n == 0;
}

bool selection_matches(struct selection *s, const char *ks, const char *table)
{
	bool any = s->n == 0;
	for (size_t i = 0; i < s->n; i++) {
		struct selection_entry *e = &s->v[i];
		if (!strcmp(e->keyspace, ks) && (!e->table || !strcmp(e->table, table))) {
			e->hit = true;
			any = true;
		}
	}
	return any;
}

bool selection_takes(struct selection *s, const char *ks, const char *table)
{
	return s->n ? selection_matches(s, ks, table) : !is_system_keyspace(ks);
}

const struct selection_entry *selection_node_local(const struct selection *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (is_node_local_keyspace(s->v[i].keyspace))
			return &s->v[i];
	return NULL;
}

const struct selection_entry *selection_unmatched(const struct selection *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (!s->v[i].hit)
			return &s->v[i];
	return NULL;
}

int sb_selection_entry(struct strbuf *sb, const struct selection_entry *e)
{
	int r = sb_puts(sb, e->table ? "table " : "keyspace ");
	r = r ?: sb_escape(sb, e->keyspace);
	if (e->table)
		r = r ?: sb_puts(sb, ".") ?: sb_escape(sb, e->table);
	return r;
}

int sb_scope(struct strbuf *sb, const struct manifest_scope *s)
{
	int r = 0;
	if (s->n == 0)
		r = sb_puts(sb, s->system ? "every table and the system keyspaces" : "every table");
	for (size_t i = 0; r == 0 && i < s->n; i++) {
		r = sb_puts(sb, i == 0 ? "" : i + 1 < s->n ? ", " : " and ");
		r = r ?: sb_puts(sb, s->v[i].table ? "table " : "keyspace ");
		r = r ?: sb_escape(sb, s->v[i].keyspace);
		if (s->v[i].table)
			r = r ?: sb_puts(sb, ".") ?: sb_escape(sb, s->v[i].table);
	}
	return r;
}

void selection_free(struct selection *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].keyspace);
		free(s->v[i].table);
	}
	free(s->v);
	*s = (struct selection){0};
}

/* ---- JSON writer -------------------------------------------------------------------------- */

void json_init(struct json *j, struct strbuf *sb)
{
	*j = (struct json){.sb = sb};
}

static void json_put(struct json *j, const char *s)
{
	if (!j->err)
		j->err = sb_puts(j->sb, s);
}

/* Separator before a value (or a key): none after a key, else a comma when the container
 * holds something; elements of the top-level container each start a line. */
static void json_sep(struct json *j)
{
	if (j->after_key) {
		j->after_key = false;
		return;
	}
	if (j->depth == 0)
		return;
	if (j->nonempty[j->depth])
		json_put(j, j->depth == 1 ? ",\n  " : ", ");
	else if (j->depth == 1)
		json_put(j, "\n  ");
	j->nonempty[j->depth] = true;
}

static void json_open(struct json *j, const char *bracket)
{
	json_sep(j);
	json_put(j, bracket);
	if (j->depth >= JSON_MAX_DEPTH) {
		j->err = j->err ?: -EINVAL;
		return;
	}
	j->nonempty[++j->depth] = false;
}

static void json_close(struct json *j, const char *bracket)
{
	if (j->depth <= 0) {
		j->err = j->err ?: -EINVAL;
		return;
	}
	if (j->depth == 1 && j->nonempty[1])
		json_put(j, "\n");
	json_put(j, bracket);
	if (--j->depth == 0)
		json_put(j, "\n");
}

void json_object_begin(struct json *j) { json_open(j, "{"); }
void json_object_end(struct json *j) { json_close(j, "}"); }
void json_array_begin(struct json *j) { json_open(j, "["); }
void json_array_end(struct json *j) { json_close(j, "]"); }

void json_key(struct json *j, const char *key)
{
	json_sep(j);
	if (!j->err)
		j->err = sb_json_str(j->sb, key);
	json_put(j, ": ");
	j->after_key = true;
}

void json_str(struct json *j, const char *s)
{
	json_sep(j);
	if (!s)
		json_put(j, "null");
	else if (!j->err)
		j->err = sb_json_str(j->sb, s);
}

void json_u64(struct json *j, uint64_t v)
{
	json_sep(j);
	if (!j->err)
		j->err = sb_printf(j->sb, "%llu", (unsigned long long)v);
}

void json_i64(struct json *j, int64_t v)
{
	json_sep(j);
	if (!j->err)
		j->err = sb_printf(j->sb, "%lld", (long long)v);
}

void json_bool(struct json *j, bool v)
{
	json_sep(j);
	json_put(j, v ? "true" : "false");
}

void json_null(struct json *j)
{
	json_sep(j);
	json_put(j, "null");
}

void json_double(struct json *j, double v, int decimals)
{
	json_sep(j);
	if (!isfinite(v))
		json_put(j, "null");
	else if (!j->err)
		j->err = sb_printf(j->sb, "%.*f", decimals, v);
}

void json_kv_double(struct json *j, const char *key, double v, int decimals) { json_key(j, key); json_double(j, v, decimals); }
void json_kv_str(struct json *j, const char *key, const char *s) { json_key(j, key); json_str(j, s); }
void json_kv_u64(struct json *j, const char *key, uint64_t v) { json_key(j, key); json_u64(j, v); }
void json_kv_i64(struct json *j, const char *key, int64_t v) { json_key(j, key); json_i64(j, v); }
void json_kv_bool(struct json *j, const char *key, bool v) { json_key(j, key); json_bool(j, v); }

int json_error(const struct json *j)
{
	return j->err;
}

int json_flush(struct json *j, FILE *f)
{
	if (j->sb->len && fwrite(j->sb->buf, 1, j->sb->len, f) != j->sb->len)
		j->err = j->err ?: -EIO;
	j->sb->len = 0;
	if (j->sb->buf)
		j->sb->buf[0] = '\0';
	return j->err;
}

/* ---- cancellation and progress ------------------------------------------------------------ */

volatile sig_atomic_t cancel_requested;

static void on_signal(int sig)
{
	cancel_requested = sig;
}

void install_cancel_handlers(void)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

void progress_init(struct progress *p, const char *what, uint64_t total_bytes, uint64_t total_files)
{
	*p = (struct progress){
		.tty = isatty(STDERR_FILENO),
		.what = what,
		.total_bytes = total_bytes,
		.total_files = total_files,
		.start = mono_seconds(),
	};
}

static void progress_draw(struct progress *p, bool force)
{
	double now = mono_seconds();
	if (!p->tty || (!force && now - p->last < 0.2))
		return;
	p->last = now;
	char done[32], total[32], rate[32];
	format_bytes(p->done_bytes, done, sizeof(done));
	format_bytes(p->total_bytes, total, sizeof(total));
	double el = now - p->start;
	format_bytes(el > 0 ? (uint64_t)((double)p->done_bytes / el) : 0, rate, sizeof(rate));
	fprintf(stderr, "\r\033[K%s: %s / %s (%.0f%%), %llu / %llu files, %s/s", p->what, done, total,
		p->total_bytes ? 100.0 * (double)p->done_bytes / (double)p->total_bytes : 100.0,
		(unsigned long long)p->done_files, (unsigned long long)p->total_files, rate);
	fflush(stderr);
}

void progress_add(void *ctx, uint64_t bytes)
{
	struct progress *p = ctx;
	p->done_bytes += bytes;
	progress_draw(p, false);
}

void progress_file_done(struct progress *p)
{
	p->done_files++;
	progress_draw(p, false);
}

void progress_end(struct progress *p)
{
	if (p->tty && p->last > 0) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
}

/* ---- option table ------------------------------------------------------------------------- */

int cli_take_config(int argc, char **argv, const char **path)
{
	*path = NULL;
	int n = 1, i = 1;
	for (; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--config")) {
			if (i + 1 >= argc) {
				errorf("--config needs a FILE");
				return -1;
			}
			*path = argv[++i];
		} else if (!strncmp(argv[i], "--config=", 9)) {
			*path = argv[i] + 9;
		} else {
			argv[n++] = argv[i];
		}
	}
	while (i < argc)
		argv[n++] = argv[i++];
	argv[n] = NULL;
	return n;
}

static size_t count_options(const struct cli_command *cmd)
{
	size_t n = 0;
	while (cmd->options && cmd->options[n].name)
		n++;
	return n;
}

int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "cassbackup %s: ", cmd->name);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (see 'cassbackup %s --help')\n", cmd->name);
	va_end(ap);
	return CB_EXIT_USAGE;
}

static bool takes_arg(const struct cli_option *o)
{
	return o->type != OPT_FLAG;
}

/* The generated usage line: required options, [optional ones], operands. */
static void usage_line(const struct cli_command *cmd, struct strbuf *sb)
{
	sb_printf(sb, "cassbackup %s", cmd->name);
	for (size_t i = 0; i < count_options(cmd); i++) {
		const struct cli_option *o = &cmd->options[i];
		bool req = o->flags & OPT_REQUIRED;
		bool many = o->type == OPT_STRINGS || o->type == OPT_KEYSPACE || o->type == OPT_TABLE;
		sb_printf(sb, " %s--%s%s%s%s%s", req ? "" : "[", o->name, takes_arg(o) ? " " : "",
			  takes_arg(o) ? o->arg : "", req ? "" : "]", many ? "..." : "");
	}
	if (cmd->operands)
		sb_printf(sb, " %s", cmd->operands);
}

void cli_help(const struct cli_command *cmd, FILE *f)
{
	struct strbuf sb = {0};
	if (cmd->usage) {
		for (size_t i = 0; cmd->usage[i]; i++)
			sb_printf(&sb, "%s cassbackup %s %s\n", i ? "      " : "usage:", cmd->name, cmd->usage[i]);
	} else {
		sb_puts(&sb, "usage: ");
		usage_line(cmd, &sb);
		sb_puts(&sb, "\n");
	}
	if (cmd->description)
		sb_printf(&sb, "\n%s\n", cmd->description);
	sb_puts(&sb, "\noptions:\n");
	for (size_t i = 0; i < count_options(cmd); i++) {
		const struct cli_option *o = &cmd->options[i];
		struct strbuf left = {0};
		sb_printf(&left, "  %c%c%c --%s%s%s", o->short_name ? '-' : ' ',
			  o->short_name ? o->short_name : ' ', o->short_name ? ',' : ' ', o->name,
			  takes_arg(o) ? " " : "", takes_arg(o) ? o->arg : "");
		sb_printf(&sb, "%-30s %s", left.buf, o->help ? o->help : "");
		if (o->config_key)
			sb_printf(&sb, " (config: %s)", o->config_key);
		sb_puts(&sb, "\n");
		sb_free(&left);
	}
	sb_printf(&sb, "%-30s %s\n", "      --config FILE",
		  "read defaults from FILE instead of " CONFIG_DEFAULT_PATH);
	sb_printf(&sb, "%-30s %s\n", "  -h, --help", "show this help");
	sb_puts(&sb, "\nexit status: 0 ok, 1 the work failed, 2 usage or configuration error, "
		     "3 no such store or backup\n");
	fputs(sb.buf, f);
	sb_free(&sb);
}

/* Stores arg into o's value. 0, or < 0 with err saying what is wrong with arg. */
static int set_value(struct cli_option *o, const char *arg, struct strbuf *err)
{
	int r = 0;
	switch (o->type) {
	case OPT_FLAG:
		if (!strcmp(arg, "yes") || !strcmp(arg, "true") || !strcmp(arg, "1"))
			*(bool *)o->value = true;
		else if (!strcmp(arg, "no") || !strcmp(arg, "false") || !strcmp(arg, "0"))
			*(bool *)o->value = false;
		else
			r = -EINVAL, sb_puts(err, "expected yes or no");
		break;
	case OPT_STRING:
		*(const char **)o->value = arg;
		break;
	case OPT_STRINGS:
		if ((r = strv_push(o->value, arg)) < 0)
			sb_puts(err, strerror(-r));
		break;
	case OPT_U64:
		r = parse_u64(arg, o->min, o->max, o->value, err);
		break;
	case OPT_SIZE: {
		uint64_t v;
		if ((r = parse_size(arg, &v, err)) == 0 && (v < o->min || (o->max && v > o->max))) {
			if (o->max)
				sb_printf(err, "must be from %llu to %llu bytes", (unsigned long long)o->min,
					  (unsigned long long)o->max);
			else
				sb_printf(err, "must be at least %llu bytes", (unsigned long long)o->min);
			r = -ERANGE;
		}
		if (r == 0)
			*(uint64_t *)o->value = v;
		break;
	}
	case OPT_DURATION:
		r = parse_duration(arg, o->value, err);
		break;
	case OPT_KEYSPACE:
		r = selection_add_keyspace(o->value, arg, err);
		break;
	case OPT_TABLE:
		r = selection_add_table(o->value, arg, err);
		break;
	}
	return r;
}

static struct cli_option *find_long(struct cli_command *cmd, const char *name, size_t len)
{
	for (size_t i = 0; i < count_options(cmd); i++)
		if (strlen(cmd->options[i].name) == len && !strncmp(cmd->options[i].name, name, len))
			return &cmd->options[i];
	return NULL;
}

static struct cli_option *find_short(struct cli_command *cmd, char c)
{
	for (size_t i = 0; i < count_options(cmd); i++)
		if (cmd->options[i].short_name == c)
			return &cmd->options[i];
	return NULL;
}

static int unknown_option(struct cli_command *cmd, const char *arg, size_t len)
{
	size_t n = count_options(cmd);
	const char *names[n + 1], *best[1];
	for (size_t i = 0; i < n; i++)
		names[i] = cmd->options[i].name;
	_cleanup_free_ char *name = strndup(arg, len);
	_cleanup_free_ char *shown = cli_escape(arg);
	if (name && len > 2 && closest_names(name + 2, names, n, best, 1))
		return cli_usage_error(cmd, "unknown option %s; did you mean --%s?", shown ? shown : "", best[0]);
	return cli_usage_error(cmd, "unknown option %s", shown ? shown : "");
}

/* Parses one option at argv[*i]; moves *i past its value. CLI_RUN or an exit code. */
static int parse_option(struct cli_command *cmd, int argc, char **argv, int *i)
{
	const char *a = argv[*i], *val = NULL;
	struct cli_option *o;
	if (a[1] == '-') {
		const char *eq = strchr(a, '=');
		size_t len = eq ? (size_t)(eq - a) : strlen(a);
		o = find_long(cmd, a + 2, len - 2);
		if (!o)
			return unknown_option(cmd, a, len);
		val = eq ? eq + 1 : NULL;
	} else {
		o = find_short(cmd, a[1]);
		if (!o)
			return unknown_option(cmd, a, strlen(a));
		val = a[2] ? a + 2 : NULL;
	}
	if (!takes_arg(o)) {
		if (val)
			return cli_usage_error(cmd, "--%s takes no value", o->name);
		*(bool *)o->value = true;
	} else {
		if (!val && *i + 1 >= argc)
			return cli_usage_error(cmd, "--%s needs a value (%s)", o->name, o->arg);
		if (!val)
			val = argv[++*i];
		struct strbuf err = {0};
		if (set_value(o, val, &err) < 0) {
			_cleanup_free_ char *shown = cli_escape(val);
			int rc = cli_usage_error(cmd, "--%s %s: %s", o->name, shown ? shown : "",
						 err.buf ? err.buf : "invalid");
			sb_free(&err);
			return rc;
		}
	}
	o->given = true;
	return CLI_RUN;
}

struct config_fill {
	struct cli_option *o;
	struct strbuf *err;
	int line;
};

static int fill_each(void *ctx, const char *key, const char *value, int line)
{
	struct config_fill *f = ctx;
	if (strcmp(key, f->o->config_key))
		return 0;
	f->line = line;
	int r = set_value(f->o, value, f->err);
	return r < 0 ? r : 0;
}

/* Options not on the line take their configuration value, through the same parser. */
static int fill_from_config(struct cli_command *cmd)
{
	for (size_t i = 0; i < count_options(cmd); i++) {
		struct cli_option *o = &cmd->options[i];
		if (o->given || !o->config_key)
			continue;
		struct strbuf err = {0};
		struct config_fill f = {.o = o, .err = &err};
		int r;
		if (o->type == OPT_STRINGS || o->type == OPT_KEYSPACE || o->type == OPT_TABLE) {
			r = config_each(fill_each, &f);
			o->given = f.line > 0;
		} else {
			const char *v = config_get_at(o->config_key, &f.line);
			r = v ? set_value(o, v, &err) : 0;
			o->given = v != NULL;
		}
		o->from_config = o->given;
		if (r < 0) {
			_cleanup_free_ char *path = cli_escape(config_path() ? config_path() : "");
			fprintf(stderr, "cassbackup %s: config %s, line %d: %s: %s\n", cmd->name,
				path ? path : "", f.line, o->config_key, err.buf ? err.buf : "invalid");
			sb_free(&err);
			return CB_EXIT_USAGE;
		}
	}
	return CLI_RUN;
}

static int check_required(struct cli_command *cmd, int noperands)
{
	for (size_t i = 0; i < count_options(cmd); i++) {
		const struct cli_option *o = &cmd->options[i];
		if ((o->flags & OPT_REQUIRED) && !o->given) {
			if (o->config_key)
				return cli_usage_error(cmd, "missing --%s %s (or '%s' in the configuration)",
						       o->name, o->arg, o->config_key);
			return cli_usage_error(cmd, "missing --%s %s", o->name, o->arg);
		}
	}
	if (noperands < cmd->min_operands)
		return cli_usage_error(cmd, "missing %s", cmd->operands ? cmd->operands : "operand");
	if (cmd->max_operands >= 0 && noperands > cmd->max_operands)
		return cli_usage_error(cmd, "too many operands%s%s", cmd->operands ? "; expected " : "",
				       cmd->operands ? cmd->operands : "");
	return CLI_RUN;
}

/* s3_parallel: how many requests an S3 client has in flight at most. */
int cli_parse_s3_parallel(const char *s, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(s, &end, 10);
	if (errno || end == s || *end || n < 1 || n > S3_PARALLEL_MAX)
		return -EINVAL;
	*out = (unsigned)n;
	return 0;
}

/* --limit-upload / --limit-download: added to the table of every command that moves a
 * backup's bytes to or from a store. They bound the S3 client's transfers (struct
 * cb_s3_options); a local store ignores them. */
static const char *const transfer_commands[] = {
	"create", "copy", "restore", "verify", "check", "export", "load", "prune",
};
static uint64_t limit_upload, limit_download;

static bool moves_bytes(const struct cli_command *cmd)
{
	for (size_t i = 0; i < ARRAY_SIZE(transfer_commands); i++)
		if (!strcmp(cmd->name, transfer_commands[i]))
			return true;
	return false;
}


/* cmd's options followed by --key-file and, for a command that moves bytes, the limit
 * options; the caller frees it. NULL: out of memory. */
static struct cli_option *with_common(const struct cli_command *cmd, bool limits)
{
	size_t n = count_options(cmd);
	struct cli_option *v = calloc(n + 5, sizeof(*v));
	if (!v)
		return NULL;
	if (n)
		memcpy(v, cmd->options, n * sizeof(*v));
	v[n++] = (struct cli_option){.name = "key-file", .type = OPT_STRING, .value = &key_file,
				     .arg = "FILE", .config_key = "key_file",
				     .help = "the key file of an encrypted store (mode 600)"};
	v[n++] = (struct cli_option){.name = "passphrase-file", .type = OPT_STRING,
				     .value = &passphrase_file, .arg = "FILE",
				     .config_key = "passphrase_file",
				     .help = "or a passphrase of an encrypted store, from FILE (mode 600)"};
	if (!limits)
		return v;
	v[n] = (struct cli_option){.name = "limit-upload", .type = OPT_SIZE, .value = &limit_upload,
				   .arg = "RATE", .config_key = "limit_upload",
				   .help = "send at most RATE bytes/s to object storage (50M; 0: no limit)"};
	v[n + 1] = (struct cli_option){.name = "limit-download", .type = OPT_SIZE,
				       .value = &limit_download, .arg = "RATE",
				       .config_key = "limit_download",
				       .help = "receive at most RATE bytes/s from object storage"};
	return v;
}

/* Hands the limits to the S3 client of every store this process opens. */
static void apply_limits(const struct cli_command *cmd)
{
	s3_settings.limit_upload = limit_upload;
	s3_settings.limit_download = limit_download;
	if (getenv("CASSBACKUP_DEBUG"))
		fprintf(stderr, "cassbackup %s: object storage transfer limits: upload %llu B/s, "
			"download %llu B/s (0: none)\n", cmd->name,
			(unsigned long long)s3_settings.limit_upload,
			(unsigned long long)s3_settings.limit_download);
}

static int parse_table(struct cli_command *cmd, int argc, char **argv, int *first)
{
	char *ops[argc > 0 ? argc : 1];
	int nops = 0, i = 1;
	bool only_operands = false;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (only_operands || a[0] != '-' || !a[1]) {
			ops[nops++] = argv[i];
		} else if (!strcmp(a, "--")) {
			only_operands = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			cli_help(cmd, stdout);
			return CB_EXIT_OK;
		} else {
			int r = parse_option(cmd, argc, argv, &i);
			if (r != CLI_RUN)
				return r;
		}
	}
	*first = argc - nops;
	memcpy(argv + *first, ops, (size_t)nops * sizeof(*ops));
	int r = fill_from_config(cmd);
	return r != CLI_RUN ? r : check_required(cmd, nops);
}

const struct cli_option *cli_find_option(const struct cli_command *cmd, const char *name)
{
	for (size_t i = 0; i < count_options(cmd); i++)
		if (!strcmp(cmd->options[i].name, name))
			return &cmd->options[i];
	return NULL;
}

/* The store's secret: --key-file and --passphrase-file exclude each other on the line; one
 * given there wins over the other's configuration key (of two configuration keys, key_file
 * wins, as store_open takes it). */
static int pick_store_secret(struct cli_command *cmd)
{
	const struct cli_option *k = cli_find_option(cmd, "key-file"),
				*p = cli_find_option(cmd, "passphrase-file");
	if (!k || !p || !k->given || !p->given)
		return CLI_RUN;
	if (!k->from_config && !p->from_config)
		return cli_usage_error(cmd, "give --key-file or --passphrase-file, not both");
	if (k->from_config && !p->from_config)
		key_file = NULL;
	else if (p->from_config && !k->from_config)
		passphrase_file = NULL;
	return CLI_RUN;
}

int cli_parse(struct cli_command *cmd, int argc, char **argv, int *first)
{
	bool limits = moves_bytes(cmd);
	struct cli_option *own = cmd->options, *all = with_common(cmd, limits);
	if (!all) {
		errorf("out of memory");
		return CB_EXIT_FAILED;
	}
	cmd->options = all;
	int rc = parse_table(cmd, argc, argv, first);
	if (rc == CLI_RUN)
		rc = pick_store_secret(cmd);
	for (size_t i = 0; own && own[i].name; i++) {
		own[i].given = all[i].given;
		own[i].from_config = all[i].from_config;
	}
	cmd->options = own;
	free(all);
	if (rc == CLI_RUN && limits)
		apply_limits(cmd);
	if (rc == CLI_RUN) {
		store_settings.key_file = key_file;
		store_settings.passphrase_file = passphrase_file;
	}
	return rc;
}
