/* cassbackup key list|add|remove: the key slots of an encrypted store (storekey.c), as
 * restic's `key`: any slot opens the store's one master key, so a key file or passphrase is
 * added or retired without rewriting a pack. The store is opened with --key-file (or
 * --passphrase-file) as every command opens it; add wraps that master key for the new
 * secret; remove refuses the slot the given key opened. */
#include "cli.h"
#include "crypt.h"
#include "lock.h"
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct key_list {
	const char *current;
	struct json j;
	struct strbuf out;
	bool json;
};

static int list_one(void *ctx, const char *id, const struct crypt_slot_info *info, const char *why)
{
	struct key_list *l = ctx;
	char when[32] = "-";
	if (info) {
		time_t t = (time_t)(info->created_ns / 1000000000);
		struct tm tm;
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	}
	bool cur = !strcmp(id, l->current);
	if (l->json) {
		json_object_begin(&l->j);
		json_kv_str(&l->j, "id", id);
		json_kv_bool(&l->j, "current", cur);
		if (info) {
			json_kv_str(&l->j, "kind", info->kind == CRYPT_SLOT_FILE ? "file" : "passphrase");
			json_kv_str(&l->j, "created", when);
			json_kv_str(&l->j, "host", info->host);
			json_kv_bool(&l->j, "config_bound", info->bound);
		} else {
			json_kv_str(&l->j, "error", why);
		}
		json_object_end(&l->j);
		return 0;
	}
	_cleanup_free_ char *host = info ? cli_escape(info->host) : NULL, *w = cli_escape(why);
	return sb_printf(&l->out, "%s %-32s %-10s %-20s %s\n", cur ? "*" : " ", id,
			 info ? (info->kind == CRYPT_SLOT_FILE ? "file" : "passphrase") : "DAMAGED", when,
			 info ? (host ? host : "") : (w ? w : ""));
}

static int key_list(struct store *s, bool json)
{
	struct key_list l = {.current = store_key_slot(s), .json = json};
	struct strbuf err = {0};
	json_init(&l.j, &l.out);
	if (json)
		json_array_begin(&l.j);
	else
		sb_printf(&l.out, "  %-32s %-10s %-20s %s\n", "ID", "KIND", "CREATED", "HOST");
	int r = store_keys_list(s, list_one, &l, &err);
	if (json) {
		json_array_end(&l.j);
		sb_puts(&l.out, "\n");
	}
	if (r < 0 || json_error(&l.j) < 0)
		errorf("cannot list key slots: %s", err.len ? err.buf : strerror(-(r < 0 ? r : json_error(&l.j))));
	else
		fputs(l.out.buf, stdout);
	sb_free(&l.out);
	sb_free(&err);
	return r < 0 ? CB_EXIT_FAILED : CB_EXIT_OK;
}

static int key_add(struct store *s, const char *new_key, const char *new_pass)
{
	struct strbuf err = {0};
	struct crypt_secret *secret = NULL;
	bool made = false;
	int r = 0;
	if (new_key && access(new_key, F_OK) < 0 && errno == ENOENT) {
		r = crypt_keyfile_create(new_key, &err);
		made = r == 0;
	}
	if (r == 0)
		r = new_key ? crypt_keyfile_read(new_key, &secret, &err)
			    : crypt_secret_file_read(new_pass, "passphrase file", CRYPT_PASSPHRASE_MIN,
						     &secret, &err);
	char id[33];
	r = r ?: store_keys_add(store_backend(s), store_get_config(s)->id,
				store_get_config(s)->crypt_chunk, store_key(s),
				new_key ? CRYPT_SLOT_FILE : CRYPT_SLOT_PASSPHRASE, secret, id, &err);
	crypt_secret_free(secret);
	if (r < 0) {
		errorf("%s", err.buf ? err.buf : strerror(-r));
		sb_free(&err);
		return CB_EXIT_FAILED;
	}
	_cleanup_free_ char *shown = cli_escape(new_key ? new_key : new_pass);
	if (made)
		printf("created key file %s\n", shown ? shown : "");
	printf("added key slot %s (%s %s)\n", id, new_key ? "key file" : "passphrase file",
	       shown ? shown : "");
	sb_free(&err);
	return CB_EXIT_OK;
}

/* Removes slot id under the store's exclusive lock, so that two removes run one after the
 * other: each removes only while the slot its key opened is still there, so no two keys can
 * remove each other's slots and leave none (storekey.c). Waits a minute for other locks, as
 * forget does. */
static int key_remove(struct store *s, const char *location, const char *id)
{
	struct store_lock *lock = NULL;
	if (cli_store_lock(s, location, true, "key remove", 60, &lock) < 0)
		return CB_EXIT_FAILED;
	struct strbuf err = {0};
	int r = store_keys_remove(s, lock, id, &err);
	if (r >= 0)
		printf("removed key slot %s\n", id);
	if (r != 0)
		errorf("%s", err.buf ? err.buf : strerror(-r));
	sb_free(&err);
	store_lock_release(lock);
	return r != 0 ? CB_EXIT_FAILED : CB_EXIT_OK;
}

int cmd_key(int argc, char **argv)
{
	const char *store = NULL, *new_key = NULL, *new_pass = NULL;
	bool json = false;
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &store, .arg = "DIR",
		 .help = "the encrypted store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "new-key-file", .type = OPT_STRING, .value = &new_key, .arg = "FILE",
		 .help = "add: a slot for this key file (made when missing)"},
		{.name = "new-passphrase-file", .type = OPT_STRING, .value = &new_pass, .arg = "FILE",
		 .help = "add: a slot for the passphrase in FILE (scrypt)"},
		{.name = "json", .type = OPT_FLAG, .value = &json, .help = "list: JSON"},
		{0},
	};
	struct cli_command cmd = {
		.name = "key",
		.usage = (const char *const[]){"list --store DIR [--json]",
					       "add --store DIR (--new-key-file FILE | --new-passphrase-file FILE)",
					       "remove --store DIR ID", NULL},
		.min_operands = 1, .max_operands = 2,
		.description = "The key slots of an encrypted store: each holds the store's master key,\n"
			       "wrapped for one key file or passphrase. The store is opened with\n"
			       "--key-file (or --passphrase-file) as for any command; add makes a slot\n"
			       "for another secret, remove retires one (never the slot the given key\n"
			       "opened, marked * in the list). No pack is rewritten: a secret removed\n"
			       "no longer opens the store, but the master key does not change, so\n"
			       "whoever kept a copy of the old slot with its secret still can.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	const char *action = argv[first];
	int nops = argc - first;
	if (strcmp(action, "list") && strcmp(action, "add") && strcmp(action, "remove"))
		return cli_usage_error(&cmd, "unknown action '%s'; expected list, add or remove", action);
	if (!strcmp(action, "remove") != (nops == 2))
		return cli_usage_error(&cmd, "%s", nops == 2 ? "only remove takes an ID" : "remove needs the slot's ID");
	if (!strcmp(action, "add") && !new_key == !new_pass)
		return cli_usage_error(&cmd, "add needs one of --new-key-file FILE and --new-passphrase-file FILE");
	if (strcmp(action, "add") && (new_key || new_pass))
		return cli_usage_error(&cmd, "--new-key-file and --new-passphrase-file are for add");
	struct store *s;
	rc = cli_store_open(store, !strcmp(action, "list") ? STORE_READONLY | STORE_NO_RECONCILE
							   : STORE_NO_RECONCILE, &s);
	if (rc)
		return rc;
	_cleanup_free_ char *shown = cli_escape(store);
	if (!store_encrypted(s)) {
		errorf("store %s is not encrypted: it has no key slots", shown ? shown : "");
		store_close(s);
		return CB_EXIT_FAILED;
	}
	if (!strcmp(action, "list")) {
		rc = key_list(s, json);
	} else if (!strcmp(action, "add")) {
		rc = key_add(s, new_key, new_pass);
	} else {
		rc = key_remove(s, store, argv[first + 1]);
	}
	store_close(s);
	return rc;
}
