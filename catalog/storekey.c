/* storekey.c: the key slots of an encrypted store (keys/ID.json, crypt.h), as restic keeps
 * keys/: any slot opens the one master key, so slots are added and removed without touching
 * packs or manifests. */
#include "crypt.h"
#include "lock.h"
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define KEYS_PREFIX "keys/"

/* The slot id in keys/ID.json, or -EINVAL for another key. */
static int slot_id_of(const char *key, char id[33])
{
	size_t n = strlen(key);
	if (strncmp(key, KEYS_PREFIX, 5) || n != 5 + 32 + 5 || strcmp(key + n - 5, ".json"))
		return -EINVAL;
	memcpy(id, key + 5, 32);
	id[32] = 0;
	unsigned char raw[16];
	return hex_decode(id, raw, 16);
}

struct slot_keys {
	char (*ids)[33];
	size_t n, cap;
};

static int collect(void *ctx, const char *key, const struct cb_object_info *info)
{
	(void)info;
	struct slot_keys *k = ctx;
	char id[33];
	if (slot_id_of(key, id) < 0)
		return 0;
	if (k->n == k->cap) {
		size_t cap = k->cap ? 2 * k->cap : 8;
		void *p = realloc(k->ids, cap * sizeof(*k->ids));
		if (!p)
			return -ENOMEM;
		k->ids = p;
		k->cap = cap;
	}
	memcpy(k->ids[k->n++], id, 33);
	return 0;
}

static int list_slots(struct cb_backend *b, struct slot_keys *k, struct strbuf *err)
{
	*k = (struct slot_keys){0};
	int r = cb_backend_list_info(b, KEYS_PREFIX, collect, k);
	if (r < 0)
		sb_printf(err, "cannot list keys/: %s", cb_backend_why(r));
	return r;
}

static int get_slot(struct cb_backend *b, const char *id, char **doc, size_t *len)
{
	char key[48];
	snprintf(key, sizeof(key), KEYS_PREFIX "%s.json", id);
	return cb_backend_get(b, key, CRYPT_SLOT_MAX, doc, len);
}

int store_keys_unlock(struct cb_backend *b, const char *store_id, uint32_t chunk,
		      const struct crypt_secret *secret, int kind, struct crypt_key **key,
		      char slot_id[33], struct strbuf *err)
{
	struct slot_keys k;
	int r = list_slots(b, &k, err);
	if (r < 0)
		return r;
	unsigned tried = 0, damaged = 0;
	char damaged_id[33] = "", damaged_why[512] = "";
	/* the store ids the slots tried name: another than the config's, and whether any names
	 * none or the config's (then a slot that does not open is not this key's, as before) */
	char other_store[65] = "", other_slot[33] = "";
	bool all_name_another = true, any_names_this = false; /* any_names_this: of any kind */
	r = -EKEYREJECTED;
	for (size_t i = 0; r == -EKEYREJECTED && i < k.n; i++) {
		char *doc, why[512];
		size_t len;
		int g = get_slot(b, k.ids[i], &doc, &len);
		if (g == -ENOENT || g == -EFBIG)
			continue; /* removed meanwhile; or not a slot: others may open */
		if (g < 0) {
			sb_printf(err, "cannot read keys/%s.json: %s", k.ids[i], cb_backend_why(g));
			r = g;
			break;
		}
		struct crypt_slot_info info;
		if (crypt_slot_parse(doc, len, &info, why, sizeof(why)) < 0) {
			free(doc); /* damaged: not tried, but said when no slot opens */
			if (!damaged++) {
				memcpy(damaged_id, k.ids[i], 33);
				snprintf(damaged_why, sizeof(damaged_why), "%s", why);
			}
			continue;
		}
		bool another = *info.store && strcmp(info.store, store_id);
		any_names_this |= *info.store && !another; /* a slot from before names none */
		if ((int)info.kind != kind) {
			free(doc); /* another kind's: not tried */
			continue;
		}
		tried++;
		if (another) {
			snprintf(other_store, sizeof(other_store), "%s", info.store);
			memcpy(other_slot, k.ids[i], 33);
		} else {
			all_name_another = false;
		}
		g = crypt_slot_open(doc, len, store_id, chunk, secret, key, why, sizeof(why));
		free(doc);
		if (g == 0) {
			memcpy(slot_id, k.ids[i], 33);
			r = 0;
		} else if (g == -EUCLEAN) {
			sb_printf(err, "keys/%s.json: %s", k.ids[i], why);
			r = g;
		} else if (g != -EKEYREJECTED && g != -EBADMSG) {
			r = g;
		}
	}
	const char *what = kind == CRYPT_SLOT_FILE ? "key file" : "passphrase";
	if (r == -EKEYREJECTED && tried == 0 && damaged) {
		sb_printf(err, "no key slot for a %s opens the store: keys/%s.json is damaged (%s)", what,
			  damaged_id, damaged_why);
		if (damaged > 1)
			sb_printf(err, ", and %u more slot%s", damaged - 1, damaged == 2 ? "" : "s");
		r = -EBADMSG; /* the store's damage, not a wrong key */
	} else if (r == -EKEYREJECTED && tried == 0) {
		if (k.n)
			sb_printf(err, "the store has no key slot for a %s", what);
		else
			sb_puts(err, "the store has no key slots at all (keys/ is empty): no key opens it");
		r = k.n ? -EKEYREJECTED : -ENOKEY;
	} else if (r == -EKEYREJECTED && all_name_another && any_names_this) {
		/* tried > 0, each another store's, while a slot of another kind is this store's:
		 * the config is right, and these slots were copied in */
		sb_printf(err, "the store's %u %s slot%s %s made for another store (keys/%s.json: "
			  "store %s, not %s): copied in, or put back from the wrong copy; open the "
			  "store with its other slot (a %s) and 'cassbackup key add' a %s", tried, what,
			  tried == 1 ? "" : "s", tried == 1 ? "was" : "were", other_slot, other_store,
			  store_id, kind == CRYPT_SLOT_FILE ? "passphrase" : "key file", what);
		r = -EUCLEAN; /* the store's damage, not a wrong key */
	} else if (r == -EKEYREJECTED && all_name_another) { /* every slot named another */
		sb_printf(err, "the store's config gives its id as %s, but its key slots were made for "
			  "store %s: the config is damaged or was replaced (put back a copy)", store_id,
			  other_store);
		r = -EUCLEAN; /* the store's damage, not a wrong key */
	} else if (r == -EKEYREJECTED) {
		sb_printf(err, "the %s opens none of the store's %u %s slot%s (wrong %s?)", what, tried,
			  what, tried == 1 ? "" : "s", kind == CRYPT_SLOT_FILE ? "key" : "passphrase");
		if (secret->len && (secret->p[secret->len - 1] == '\n' || secret->p[secret->len - 1] == '\r' ||
				    secret->p[secret->len - 1] == ' '))
			sb_printf(err, "; it ends with a blank line, a carriage return or a space, which "
				  "count as part of it (only one final newline is dropped)");
		if (damaged)
			sb_printf(err, "; %u damaged slot%s not tried (keys/%s.json: %s)", damaged,
				  damaged == 1 ? "" : "s", damaged_id, damaged_why);
	} else if (r < 0 && !err->len) {
		sb_printf(err, "cannot open a key slot: %s", strerror(-r));
	}
	free(k.ids);
	return r;
}

int store_keys_add(struct cb_backend *b, const char *store_id, uint32_t chunk,
		   const struct crypt_key *key, int kind, const struct crypt_secret *secret, char id[33],
		   struct strbuf *err)
{
	unsigned char raw[16];
	if (getrandom(raw, sizeof(raw), 0) != sizeof(raw)) {
		sb_puts(err, "no random bytes");
		return -EIO;
	}
	hex_encode(raw, sizeof(raw), id);
	struct strbuf doc = {0}, k = {0};
	int r = crypt_slot_make(key, store_id, chunk, (enum crypt_slot_kind)kind, secret, &doc) ?:
		sb_printf(&k, KEYS_PREFIX "%s.json", id);
	if (r < 0)
		sb_printf(err, "cannot make a key slot: %s", strerror(-r));
	else if ((r = cb_backend_put(b, k.buf, doc.buf, doc.len, CB_PUT_EXCLUSIVE)) < 0)
		sb_printf(err, "cannot write %s: %s", k.buf, cb_backend_why(r));
	sb_free(&doc);
	sb_free(&k);
	return r;
}

int store_keys_list(struct store *s,
		    int (*cb)(void *ctx, const char *id, const struct crypt_slot_info *info,
			      const char *why),
		    void *ctx, struct strbuf *err)
{
	struct slot_keys k;
	int r = list_slots(store_backend(s), &k, err);
	for (size_t i = 0; r == 0 && i < k.n; i++) {
		char *doc, why[160] = "";
		size_t len;
		struct crypt_slot_info info;
		int g = get_slot(store_backend(s), k.ids[i], &doc, &len);
		if (g == -ENOENT)
			continue; /* removed meanwhile */
		if (g < 0 && g != -EFBIG) { /* not the slot's fault: no verdict on it */
			sb_printf(err, "cannot read keys/%s.json: %s", k.ids[i], cb_backend_why(g));
			r = g;
			break;
		}
		if (g == -EFBIG)
			snprintf(why, sizeof(why), "larger than a key slot");
		else
			g = crypt_slot_parse(doc, len, &info, why, sizeof(why));
		if (g != -EFBIG)
			free(doc);
		r = cb(ctx, k.ids[i], g == 0 ? &info : NULL, why);
	}
	free(k.ids);
	return r;
}

/* How many slots of keys/ could open this store: each that parses and was made for it (or
 * says for none: a slot from before slots named their store); a damaged slot, or another
 * store's copied in, opens nothing. 0 or -errno (err). */
static int count_usable_slots(struct store *s, size_t *usable, struct strbuf *err)
{
	struct slot_keys k;
	int r = list_slots(store_backend(s), &k, err);
	*usable = 0;
	for (size_t i = 0; r == 0 && i < k.n; i++) {
		char *doc, why[512];
		size_t len;
		struct crypt_slot_info info;
		int g = get_slot(store_backend(s), k.ids[i], &doc, &len);
		if (g == -ENOENT || g == -EFBIG)
			continue;
		if (g < 0) {
			sb_printf(err, "cannot read keys/%s.json: %s", k.ids[i], cb_backend_why(g));
			r = g;
			break;
		}
		if (crypt_slot_parse(doc, len, &info, why, sizeof(why)) == 0 &&
		    (!*info.store || !strcmp(info.store, store_get_config(s)->id)))
			(*usable)++;
		free(doc);
	}
	free(k.ids);
	return r;
}

/* After a remove: the slot this key opened is still there, or another slot is. A remove
 * paused past its lease (a suspended machine) may have let another key's remove take this
 * key's slot meanwhile; if that left the store with no slot at all, this key's is written back,
 * as it was (doc). 0 when this key's slot is there; 1 when it is gone (err says whether it was
 * written back, or another key retired it and other slots remain: that retirement stands);
 * -errno (err) when the store cannot be read or the slot written back. */
static int keep_own_slot(struct store *s, const char *doc, size_t len, struct strbuf *err)
{
	char key[48], *now;
	size_t now_len;
	snprintf(key, sizeof(key), KEYS_PREFIX "%s.json", store_key_slot(s));
	int r = get_slot(store_backend(s), store_key_slot(s), &now, &now_len);
	if (r == 0) {
		free(now);
		return 0;
	}
	size_t usable = 0;
	if (r == -ENOENT)
		r = count_usable_slots(s, &usable, err);
	if (r == 0 && usable) {
		sb_printf(err, "key slot %s, the one this key opened, was removed by another process "
			  "meanwhile: this key no longer opens the store (%zu other slot%s remain%s; "
			  "cassbackup key list)", store_key_slot(s), usable, usable == 1 ? "" : "s",
			  usable == 1 ? "s" : "");
		return 1;
	}
	if (r == 0)
		r = cb_backend_put(store_backend(s), key, doc, len, CB_PUT_EXCLUSIVE);
	if (r == 0 || r == -EEXIST) {
		sb_printf(err, "key slot %s, the one this key opened, was removed by another process "
			  "meanwhile, the last one: written back, so that a key still opens the store "
			  "(cassbackup key list)", store_key_slot(s));
		return 1;
	}
	if (!err->len)
		sb_printf(err, "key slot %s, the one this key opened, was removed by another process "
			  "meanwhile and cannot be written back: %s", store_key_slot(s), cb_backend_why(r));
	return r;
}

int store_keys_remove(struct store *s, struct store_lock *lock, const char *id, struct strbuf *err)
{
	char key[48], tmp[33];
	snprintf(key, sizeof(key), KEYS_PREFIX "%s.json", id);
	/* as keys/ names them: lower case, so that no other spelling of the slot that opened the
	 * store gets past the check below on a file system that ignores case */
	if (slot_id_of(key, tmp) < 0 || strspn(id, "0123456789abcdef") != 32) {
		sb_printf(err, "%s: not a key slot id (32 lower-case hex digits, as key list shows)", id);
		return -EINVAL;
	}
	if (!strcmp(id, store_key_slot(s))) {
		sb_printf(err, "key slot %s is the one this key opens: refusing to remove it (open the "
			  "store with another key to remove this one)", id);
		return -EBUSY;
	}
	/* the caller's own slot must still be there (removes are serialized by the store's
	 * exclusive lock): else another key removed it meanwhile, and removing one more could
	 * leave no slot at all */
	char *own;
	size_t own_len;
	int r = get_slot(store_backend(s), store_key_slot(s), &own, &own_len);
	if (r == -ENOENT)
		sb_printf(err, "key slot %s, the one this key opened, was removed meanwhile: refusing to "
			  "remove another (cassbackup key list)", store_key_slot(s));
	else if (r < 0)
		sb_printf(err, "cannot read keys/%s.json: %s", store_key_slot(s), cb_backend_why(r));
	if (r < 0)
		return r == -ENOENT ? -ESTALE : r;
	/* a remove that ran meanwhile, while this one was paused past its lease, took the lock
	 * over as stale: this one stops here */
	r = store_lock_check(lock, err);
	if (r < 0) {
		free(own);
		return r;
	}
	r = cb_backend_delete(store_backend(s), key);
	if (r == -ENOENT)
		sb_printf(err, "no key slot %s", id);
	else if (r < 0)
		sb_printf(err, "cannot remove %s: %s", key, cb_backend_why(r));
	else
		r = keep_own_slot(s, own, own_len, err);
	free(own);
	return r;
}
