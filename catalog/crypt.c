/* crypt.c: see crypt.h. */
#include "crypt.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <linux/magic.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

/* --- secrets ------------------------------------------------------------------------------ */

#define SECRET_MAX 8192

struct crypt_secret *crypt_secret_new(size_t len)
{
	if (len > SECRET_MAX - sizeof(struct crypt_secret))
		return NULL;
	size_t page = (size_t)sysconf(_SC_PAGESIZE), size = (SECRET_MAX + page - 1) / page * page;
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	(void)mlock(m, size); /* best effort: RLIMIT_MEMLOCK may forbid it */
	(void)madvise(m, size, MADV_DONTDUMP);
	struct crypt_secret *s = m;
	s->p = (unsigned char *)m + sizeof(*s);
	s->len = len;
	return s;
}

void crypt_secret_free(struct crypt_secret *s)
{
	if (!s)
		return;
	size_t page = (size_t)sysconf(_SC_PAGESIZE), size = (SECRET_MAX + page - 1) / page * page;
	OPENSSL_cleanse(s, size);
	munlock(s, size);
	munmap(s, size);
}

/* --- keys --------------------------------------------------------------------------------- */

struct crypt_key {
	struct crypt_secret *mem; /* master[32] | data[32] */
};

static const unsigned char *master_of(const struct crypt_key *k) { return k->mem->p; }
static const unsigned char *data_of(const struct crypt_key *k) { return k->mem->p + CRYPT_KEY_LEN; }

static int hmac(const unsigned char *key, size_t klen, const void *a, size_t alen, const void *b,
		size_t blen, unsigned char out[32])
{
	unsigned char in[256];
	unsigned len = 32;
	if (alen + blen > sizeof(in))
		return -EINVAL;
	memcpy(in, a, alen);
	if (blen)
		memcpy(in + alen, b, blen);
	int ok = HMAC(EVP_sha256(), key, (int)klen, in, alen + blen, out, &len) != NULL;
	OPENSSL_cleanse(in, sizeof(in));
	return ok ? 0 : -EIO;
}

int crypt_key_from_master(const unsigned char *master, struct crypt_key **out)
{
	struct crypt_key *k = calloc(1, sizeof(*k));
	if (!k || !(k->mem = crypt_secret_new(2 * CRYPT_KEY_LEN))) {
		free(k);
		return -ENOMEM;
	}
	memcpy(k->mem->p, master, CRYPT_KEY_LEN);
	static const char label[] = "cassbackup data key v1";
	int r = hmac(master, CRYPT_KEY_LEN, label, sizeof(label) - 1, NULL, 0, k->mem->p + CRYPT_KEY_LEN);
	if (r < 0) {
		crypt_key_free(k);
		return r;
	}
	*out = k;
	return 0;
}

int crypt_key_new(struct crypt_key **out)
{
	struct crypt_secret *m = crypt_secret_new(CRYPT_KEY_LEN);
	if (!m)
		return -ENOMEM;
	int r = getrandom(m->p, CRYPT_KEY_LEN, 0) == CRYPT_KEY_LEN ? 0 : -EIO;
	r = r ?: crypt_key_from_master(m->p, out);
	crypt_secret_free(m);
	return r;
}

void crypt_key_free(struct crypt_key *k)
{
	if (!k)
		return;
	crypt_secret_free(k->mem);
	free(k);
}

void crypt_key_fingerprint(const struct crypt_key *k, char out[17])
{
	static const char label[] = "cassbackup key id";
	unsigned char h[32] = {0};
	hmac(master_of(k), CRYPT_KEY_LEN, label, sizeof(label) - 1, NULL, 0, h);
	hex_encode(h, 8, out);
}

/* --- key files ---------------------------------------------------------------------------- */

int crypt_keyfile_read(const char *path, struct crypt_secret **out, struct strbuf *err)
{
	return crypt_secret_file_read(path, "key file", CRYPT_KEYFILE_MIN, out, err);
}

/* Whether uid may have chosen a key we read: ourselves or root. */
static bool owner_trusted(uid_t uid)
{
	return uid == geteuid() || uid == 0;
}

/* The next component of *p (skipping slashes) into comp, *p moved past it: false at the end
 * or for a component longer than NAME_MAX. */
static bool next_component(const char **p, char comp[NAME_MAX + 1])
{
	while (**p == '/')
		(*p)++;
	size_t n = strcspn(*p, "/");
	if (!n || n > NAME_MAX)
		return false;
	memcpy(comp, *p, n);
	comp[n] = '\0';
	*p += n;
	return true;
}

/* Is directory dir on procfs below its root, where a symlink may be a magic link
 * (/proc/PID/cwd, /root, /fd/N)? The links of /proc itself (self, thread-self, mounts) are
 * plain ones, their text a path. */
static bool magic_in_proc(int dir)
{
	struct statfs sf;
	struct stat d, root;
	return fstatfs(dir, &sf) == 0 && sf.f_type == PROC_SUPER_MAGIC && fstat(dir, &d) == 0 &&
	       !(stat("/proc", &root) == 0 && root.st_dev == d.st_dev && root.st_ino == d.st_ino);
}

/* Is directory dir (on procfs) this process's own: /proc/self, /proc/thread-self, or their fd
 * directories? Only their links are followed: another process's point where it chooses. */
static bool ours_in_proc(int dir)
{
	static const char *const own[] = {"/proc/self", "/proc/self/fd", "/proc/thread-self",
					  "/proc/thread-self/fd"};
	struct stat d, o;
	if (fstat(dir, &d) < 0)
		return false;
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (stat(own[i], &o) == 0 && o.st_dev == d.st_dev && o.st_ino == d.st_ino)
			return true;
	return false;
}

/* Opens the last component comp of directory dir for reading, as the O_PATH descriptor at
 * names it (same file, or -EAGAIN: it was replaced meanwhile). */
static int open_final(int dir, const char *comp, int at)
{
	int fd = openat(dir, comp, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
	struct stat a, b;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &a) < 0 || fstat(at, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		close(fd);
		return -EAGAIN;
	}
	return fd;
}

/* Opens path for reading as open(2) would, but one component at a time from directory
 * descriptors (O_PATH | O_NOFOLLOW), each symlink on the way (in any component) owned by us or
 * root: a link chooses the key as well as the file it names does (a link planted in a shared
 * directory, to a private file whose bytes its planter knows, or to a directory of theirs).
 * What is checked is what is opened: no name is looked up twice. The descriptor, or -errno;
 * -EINVAL with err naming a link owned by another. */
static int open_checked(const char *path, const char *what, struct strbuf *err)
{
	char rest[2 * PATH_MAX], comp[NAME_MAX + 1], target[PATH_MAX];
	char walked[PATH_MAX]; /* the directories descended so far, as text: for messages only */
	if ((size_t)snprintf(rest, sizeof(rest), "%s", path) >= sizeof(rest))
		return -ENAMETOOLONG;
	snprintf(walked, sizeof(walked), "%s", path[0] == '/' ? "" : ".");
	int dir = open(path[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	int r = dir < 0 ? -errno : 0, hops = 0;
	const char *p = rest;
	while (r == 0) {
		if (!next_component(&p, comp)) { /* "/" or "." itself: not a file, open(2) says */
			if (p[strspn(p, "/")]) {
				r = -ENAMETOOLONG; /* a component longer than NAME_MAX */
				break;
			}
			r = openat(dir, ".", O_RDONLY | O_CLOEXEC | O_NONBLOCK);
			r = r < 0 ? -errno : r;
			break;
		}
		const char *q = p;
		while (*q == '/')
			q++;
		bool last = !*q && *p != '/'; /* "k/" names a directory: not the last as a file */
		int at = openat(dir, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;
		if (at < 0 || fstat(at, &st) < 0) {
			r = -errno;
			if (at >= 0)
				close(at);
			break;
		}
		if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlinkat(at, "", target, sizeof(target) - 1);
			close(at);
			if (st.st_uid != geteuid() && st.st_uid != 0) {
				sb_printf(err, "%s %s: the symlink %s/%s is owned by user id %u, not by us "
					  "(user id %u) or root: whoever owns it chooses the key (use the file "
					  "it names)", what, path, walked, comp, (unsigned)st.st_uid,
					  (unsigned)geteuid());
				r = -EINVAL;
			} else if (magic_in_proc(dir) && !ours_in_proc(dir)) {
				/* another process's /proc/PID links: it chooses where they point, and one
				 * that is not dumpable shows them as root's */
				sb_printf(err, "%s %s: %s/%s is a link of another process in /proc: it "
					  "chooses the key (use the file it names)", what, path, walked, comp);
				r = -EINVAL;
			} else if (magic_in_proc(dir)) { /* a magic link of ours (/proc/self/fd/N,
							   * .../root): its text is no path; the
							   * kernel follows it */
				int fd = openat(dir, comp, (last ? O_RDONLY | O_NOCTTY | O_NONBLOCK
								 : O_PATH | O_DIRECTORY) | O_CLOEXEC);
				r = fd < 0 ? -errno : last ? fd : 0;
				if (last)
					break;
				close(dir);
				dir = fd;
				size_t wl = strlen(walked);
				snprintf(walked + wl, sizeof(walked) - wl, "/%s", comp);
			} else if (n < 0 || ++hops > 40) {
				r = n < 0 ? -errno : -ELOOP;
			} else {
				target[n] = '\0';
				char next[2 * PATH_MAX];
				r = (size_t)snprintf(next, sizeof(next), "%s%s", target, p) >= sizeof(next)
					    ? -ENAMETOOLONG : 0;
				memcpy(rest, next, sizeof(rest));
				p = rest;
				if (r == 0 && target[0] == '/') {
					close(dir);
					dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
					r = dir < 0 ? -errno : 0;
					walked[0] = '\0';
				}
			}
			continue;
		}
		if (last) {
			r = open_final(dir, comp, at);
			close(at);
			break;
		}
		close(dir);
		dir = at;
		if (!S_ISDIR(st.st_mode))
			r = -ENOTDIR;
		size_t wl = strlen(walked);
		snprintf(walked + wl, sizeof(walked) - wl, "/%s", comp); /* cut short: only words */
	}
	if (dir >= 0)
		close(dir);
	return r;
}

int crypt_secret_file_read(const char *path, const char *what, size_t min,
			   struct crypt_secret **out, struct strbuf *err)
{
	int fd = open_checked(path, what, err);
	if (fd < 0) {
		if (!err->len)
			sb_printf(err, "%s %s: %s", what, path, strerror(-fd));
		return fd;
	}
	struct stat st;
	int r = fstat(fd, &st) < 0 ? -errno : 0;
	if (r == 0 && !S_ISREG(st.st_mode)) {
		sb_printf(err, "%s %s: not a regular file", what, path);
		r = -EINVAL;
	} else if (r == 0 && (st.st_mode & 077)) {
		sb_printf(err, "%s %s: mode %03o lets others than its owner at the key (chmod 600)",
			  what, path, (unsigned)(st.st_mode & 0777));
		r = -EINVAL; /* not -EPERM: nothing was denied to us, the file is too open */
	} else if (r == 0 && !owner_trusted(st.st_uid)) {
		/* root reading a file another user wrote: that user would choose the key */
		sb_printf(err, "%s %s: owned by user id %u, not by us (user id %u) or root: whoever "
			  "owns it could have written it (chown it, or use another file)", what, path,
			  (unsigned)st.st_uid, (unsigned)geteuid());
		r = -EINVAL;
	} else if (r == 0 && (st.st_size < (off_t)min || st.st_size > CRYPT_KEYFILE_MAX)) {
		sb_printf(err, "%s %s: %lld bytes; it must hold %zu to %d bytes", what, path,
			  (long long)st.st_size, min, CRYPT_KEYFILE_MAX);
		r = -EINVAL;
	} else if (r < 0) {
		sb_printf(err, "%s %s: %s", what, path, strerror(-r));
	}
	struct crypt_secret *s = r < 0 ? NULL : crypt_secret_new((size_t)st.st_size);
	if (r == 0 && !s)
		r = -ENOMEM;
	size_t got = 0;
	while (r == 0 && got < (size_t)st.st_size) {
		ssize_t n = read(fd, s->p + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			sb_printf(err, "%s %s: %s", what, path, n < 0 ? strerror(errno) : "changed while read");
		}
		got += n > 0 ? (size_t)n : 0;
	}
	close(fd);
	if (r == 0 && s->len && s->p[s->len - 1] == '\n')
		s->len--;
	if (r == 0 && s->len < min) {
		sb_printf(err, "%s %s: shorter than %zu bytes", what, path, min);
		r = -EINVAL;
	}
	if (r < 0) {
		crypt_secret_free(s);
		return r;
	}
	*out = s;
	return 0;
}

/* fsync of the directory holding path: a file just made is there after a crash too. */
static int fsync_parent(const char *path)
{
	char *dir = strdup(path);
	if (!dir)
		return -ENOMEM;
	char *slash = strrchr(dir, '/');
	const char *d = !slash ? "." : slash == dir ? "/" : (*slash = '\0', dir);
	int r = fsync_dir(d);
	free(dir);
	return r;
}

int crypt_keyfile_create(const char *path, struct strbuf *err)
{
	struct crypt_secret *s = crypt_secret_new(2 * CRYPT_KEY_LEN + 1 + CRYPT_KEY_LEN);
	if (!s) {
		sb_puts(err, "out of memory");
		return -ENOMEM;
	}
	unsigned char *raw = s->p + 2 * CRYPT_KEY_LEN + 1;
	int r = getrandom(raw, CRYPT_KEY_LEN, 0) == CRYPT_KEY_LEN ? 0 : -EIO;
	hex_encode(raw, CRYPT_KEY_LEN, (char *)s->p);
	s->p[2 * CRYPT_KEY_LEN] = '\n';
	int fd = r < 0 ? r : open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		r = r < 0 ? r : -errno;
	if (fd >= 0) {
		ssize_t n = write(fd, s->p, 2 * CRYPT_KEY_LEN + 1);
		r = n == 2 * CRYPT_KEY_LEN + 1 ? 0 : n < 0 ? -errno : -EIO;
		r = r ?: fchmod(fd, 0600) < 0 || fsync(fd) < 0 ? -errno : 0;
		close(fd);
		r = r ?: fsync_parent(path); /* its name too, before a slot is made for it */
		if (r < 0)
			unlink(path);
	}
	if (r < 0)
		sb_printf(err, "cannot create key file %s: %s", path, strerror(-r));
	crypt_secret_free(s);
	return r;
}

/* --- AES-256-GCM -------------------------------------------------------------------------- */

/* One seal (enc) or open of len bytes with key, a 12-byte nonce and aad. out gets len bytes
 * and, sealing, the tag after them; opening, the tag is read after in. */
static int gcm(EVP_CIPHER_CTX *c, bool enc, const unsigned char *key, const unsigned char *nonce,
	       const void *aad, size_t aadlen, const void *in, size_t len, void *out)
{
	int n = 0, ok = enc ? EVP_EncryptInit_ex(c, key ? EVP_aes_256_gcm() : NULL, NULL, key, nonce)
			    : EVP_DecryptInit_ex(c, key ? EVP_aes_256_gcm() : NULL, NULL, key, nonce);
	if (ok && aadlen)
		ok = enc ? EVP_EncryptUpdate(c, NULL, &n, aad, (int)aadlen)
			 : EVP_DecryptUpdate(c, NULL, &n, aad, (int)aadlen);
	if (ok && len)
		ok = enc ? EVP_EncryptUpdate(c, out, &n, in, (int)len)
			 : EVP_DecryptUpdate(c, out, &n, in, (int)len);
	if (!ok)
		return -EIO;
	unsigned char *tag = enc ? (unsigned char *)out + len : (unsigned char *)in + len;
	if (enc)
		return EVP_EncryptFinal_ex(c, (unsigned char *)out + len, &n) &&
		       EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, CRYPT_TAG, tag) ? 0 : -EIO;
	if (!EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, CRYPT_TAG, tag))
		return -EIO;
	return EVP_DecryptFinal_ex(c, (unsigned char *)out + len, &n) ? 0 : -EBADMSG;
}

/* --- key slots ---------------------------------------------------------------------------- */

static const char *kind_name(enum crypt_slot_kind k)
{
	return k == CRYPT_SLOT_FILE ? "file" : "passphrase";
}

/* The key that wraps the master key in a slot. */
static int slot_key(enum crypt_slot_kind kind, const struct crypt_secret *secret,
		    const unsigned char salt[32], uint64_t n, uint64_t r, uint64_t p,
		    unsigned char out[32])
{
	if (kind == CRYPT_SLOT_FILE) {
		unsigned len = 32;
		return HMAC(EVP_sha256(), salt, 32, secret->p, secret->len, out, &len) ? 0 : -EIO;
	}
	return EVP_PBE_scrypt((const char *)secret->p, secret->len, salt, 32, n, r, p,
			      CRYPT_SCRYPT_MAXMEM, out, 32) == 1 ? 0 : -EIO;
}

static size_t slot_aad(const char *store_id, enum crypt_slot_kind kind, unsigned char *aad)
{
	size_t n = 0;
	static const char label[] = "cassbackup key slot v1";
	memcpy(aad, label, sizeof(label)); /* with its NUL */
	n += sizeof(label);
	size_t idl = strnlen(store_id, 64);
	memcpy(aad + n, store_id, idl);
	n += idl;
	aad[n++] = 0;
	const char *kn = kind_name(kind);
	memcpy(aad + n, kn, strlen(kn));
	return n + strlen(kn);
}

/* The KDF's cost for a new slot: CRYPT_SCRYPT_N, or, in a build for the tests only
 * (-Dtest_hooks=true), a cheaper one from CASSBACKUP_TEST_SCRYPT_N. */
static uint64_t scrypt_n(void)
{
#ifdef CASSBACKUP_TEST_HOOKS
	const char *e = getenv("CASSBACKUP_TEST_SCRYPT_N");
	unsigned long long v = e ? strtoull(e, NULL, 10) : 0;
	return v >= 2 && v <= CRYPT_SCRYPT_N && !(v & (v - 1)) ? v : CRYPT_SCRYPT_N;
#else
	return CRYPT_SCRYPT_N;
#endif
}

/* config_mac (crypt.h crypt_slot_make) of master for store_id and chunk. */
static int config_mac(const unsigned char *master, const char *store_id, uint32_t chunk,
		      unsigned char out[32])
{
	static const char label[] = "cassbackup config v1"; /* with its NUL */
	unsigned char in[sizeof(label) + 65 + 4];
	size_t idl = strnlen(store_id, 64), n = 0;
	memcpy(in, label, sizeof(label));
	n += sizeof(label);
	memcpy(in + n, store_id, idl);
	n += idl;
	in[n++] = 0;
	put_le32(in + n, chunk);
	n += 4;
	return hmac(master, CRYPT_KEY_LEN, in, n, NULL, 0, out);
}

int crypt_slot_make(const struct crypt_key *k, const char *store_id, uint32_t chunk,
		    enum crypt_slot_kind kind, const struct crypt_secret *secret, struct strbuf *doc)
{
	unsigned char salt[32], nonce[12], wrapped[CRYPT_KEY_LEN + CRYPT_TAG], aad[160];
	struct crypt_secret *wk = crypt_secret_new(32);
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	uint64_t n = scrypt_n();
	int r = !wk || !c ? -ENOMEM : 0;
	if (r == 0 && (getrandom(salt, sizeof(salt), 0) != sizeof(salt) ||
		       getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce)))
		r = -EIO;
	r = r ?: slot_key(kind, secret, salt, n, CRYPT_SCRYPT_R, CRYPT_SCRYPT_P, wk->p);
	size_t aadlen = slot_aad(store_id, kind, aad);
	r = r ?: gcm(c, true, wk->p, nonce, aad, aadlen, master_of(k), CRYPT_KEY_LEN, wrapped);
	EVP_CIPHER_CTX_free(c);
	crypt_secret_free(wk);
	unsigned char mac[32];
	r = r ?: config_mac(master_of(k), store_id, chunk, mac);
	if (r < 0)
		return r;
	char hs[65], hn[25], hw[2 * sizeof(wrapped) + 1], hm[65], host[256] = "";
	hex_encode(salt, sizeof(salt), hs);
	hex_encode(nonce, sizeof(nonce), hn);
	hex_encode(wrapped, sizeof(wrapped), hw);
	hex_encode(mac, sizeof(mac), hm);
	gethostname(host, sizeof(host) - 1);
	json_t *o = json_pack("{s:i, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "format", 1, "kind",
			      kind_name(kind), "created_ns", (json_int_t)now_ns(), "host", host, "salt",
			      hs, "nonce", hn, "wrapped", hw, "store", store_id, "config_mac", hm);
	json_t *kdf = kind == CRYPT_SLOT_FILE
			      ? json_pack("{s:s}", "name", "hmac-sha256")
			      : json_pack("{s:s, s:I, s:I, s:I}", "name", "scrypt", "N", (json_int_t)n,
					  "r", (json_int_t)CRYPT_SCRYPT_R, "p", (json_int_t)CRYPT_SCRYPT_P);
	char *text = NULL;
	if (o && kdf && json_object_set_new(o, "kdf", kdf) == 0) {
		kdf = NULL;
		text = json_dumps(o, JSON_SORT_KEYS | JSON_INDENT(1));
	}
	json_decref(kdf);
	json_decref(o);
	r = text ? sb_puts(doc, text) ?: sb_puts(doc, "\n") : -ENOMEM;
	free(text);
	return r;
}

struct slot {
	struct crypt_slot_info info;
	unsigned char salt[32], nonce[12], wrapped[CRYPT_KEY_LEN + CRYPT_TAG];
	unsigned char config_mac[32];
};

static int bad(char *err, size_t errlen, const char *what)
{
	if (err && errlen)
		snprintf(err, errlen, "key slot: %s", what);
	return -EBADMSG;
}

static int hex_field(json_t *root, const char *name, unsigned char *out, size_t n)
{
	const char *s = json_string_value(json_object_get(root, name));
	return s && strlen(s) == 2 * n && hex_decode(s, out, n) == 0 ? 0 : -EBADMSG;
}

static int uint_field(json_t *o, const char *name, uint64_t lo, uint64_t hi, uint64_t *out)
{
	json_t *v = json_object_get(o, name);
	if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < lo ||
	    (uint64_t)json_integer_value(v) > hi)
		return -EBADMSG;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int slot_parse(const char *doc, size_t len, struct slot *s, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	if (len > CRYPT_SLOT_MAX)
		return bad(err, errlen, "larger than 4 KiB");
	json_error_t je;
	json_t *root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(root)) {
		json_decref(root);
		return bad(err, errlen, "not a JSON object");
	}
	int r = 0;
	uint64_t fmt = 0;
	const char *kind = json_string_value(json_object_get(root, "kind"));
	json_t *kdf = json_object_get(root, "kdf");
	const char *kdfname = json_string_value(json_object_get(kdf, "name"));
	const char *host = json_string_value(json_object_get(root, "host"));
	json_t *created = json_object_get(root, "created_ns");
	json_t *store = json_object_get(root, "store"), *mac = json_object_get(root, "config_mac");
	if (uint_field(root, "format", 1, 1, &fmt) < 0)
		r = bad(err, errlen, "\"format\" is not 1");
	else if (!kind || (strcmp(kind, "file") && strcmp(kind, "passphrase")))
		r = bad(err, errlen, "\"kind\" is neither \"file\" nor \"passphrase\"");
	else if (!json_is_integer(created) || !host || strlen(host) >= sizeof(s->info.host))
		r = bad(err, errlen, "\"created_ns\" or \"host\" missing");
	else if (hex_field(root, "salt", s->salt, sizeof(s->salt)) < 0 ||
		 hex_field(root, "nonce", s->nonce, sizeof(s->nonce)) < 0 ||
		 hex_field(root, "wrapped", s->wrapped, sizeof(s->wrapped)) < 0)
		r = bad(err, errlen, "\"salt\", \"nonce\" or \"wrapped\" is not hex of its length");
	else if ((store && (!json_is_string(store) || strlen(json_string_value(store)) >= sizeof(s->info.store))) ||
		 (mac && hex_field(root, "config_mac", s->config_mac, sizeof(s->config_mac)) < 0))
		r = bad(err, errlen, "\"store\" or \"config_mac\" is not what it should be");
	if (r == 0) {
		s->info.bound = mac != NULL;
		if (store)
			snprintf(s->info.store, sizeof(s->info.store), "%s", json_string_value(store));
		s->info.kind = !strcmp(kind, "file") ? CRYPT_SLOT_FILE : CRYPT_SLOT_PASSPHRASE;
		s->info.created_ns = json_integer_value(created);
		snprintf(s->info.host, sizeof(s->info.host), "%s", host);
		if (s->info.kind == CRYPT_SLOT_FILE && (!kdfname || strcmp(kdfname, "hmac-sha256")))
			r = bad(err, errlen, "a key file slot's \"kdf\" is not hmac-sha256");
		else if (s->info.kind == CRYPT_SLOT_PASSPHRASE &&
			 (!kdfname || strcmp(kdfname, "scrypt") ||
			  uint_field(kdf, "N", 2, UINT64_C(1) << 24, &s->info.n) < 0 ||
			  (s->info.n & (s->info.n - 1)) ||
			  uint_field(kdf, "r", 1, 64, &s->info.r) < 0 ||
			  uint_field(kdf, "p", 1, 16, &s->info.p) < 0 ||
			  128 * s->info.n * s->info.r + 128 * s->info.r * s->info.p > CRYPT_SCRYPT_MAXMEM / 2))
			r = bad(err, errlen, "a passphrase slot's \"kdf\" is not scrypt with N (a power of "
				"two up to 2^24), r, p within 256 MiB");
	}
	json_decref(root);
	return r;
}

int crypt_slot_parse(const char *doc, size_t len, struct crypt_slot_info *info, char *err,
		     size_t errlen)
{
	struct slot s;
	int r = slot_parse(doc, len, &s, err, errlen);
	if (r == 0 && info)
		*info = s.info;
	return r;
}

int crypt_slot_open(const char *doc, size_t len, const char *store_id, uint32_t chunk,
		    const struct crypt_secret *secret, struct crypt_key **out, char *err,
		    size_t errlen)
{
	struct slot s;
	int r = slot_parse(doc, len, &s, err, errlen);
	if (r < 0)
		return r;
	struct crypt_secret *wk = crypt_secret_new(32), *m = crypt_secret_new(CRYPT_KEY_LEN);
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	unsigned char aad[160];
	size_t aadlen = slot_aad(store_id, s.info.kind, aad);
	r = !wk || !m || !c ? -ENOMEM : 0;
	r = r ?: slot_key(s.info.kind, secret, s.salt, s.info.n, s.info.r, s.info.p, wk->p);
	r = r ?: gcm(c, false, wk->p, s.nonce, aad, aadlen, s.wrapped, CRYPT_KEY_LEN, m->p);
	if (r == -EBADMSG) {
		r = -EKEYREJECTED;
		if (err && errlen)
			snprintf(err, errlen, "key slot: not opened by this key");
	}
	unsigned char mac[32];
	if (r == 0 && s.info.bound && (r = config_mac(m->p, store_id, chunk, mac)) == 0 &&
	    CRYPTO_memcmp(mac, s.config_mac, sizeof(mac)) != 0) {
		r = -EUCLEAN;
		if (err && errlen)
			snprintf(err, errlen, "the key opens it, but the store's config (its id or "
				 "encryption chunk size) is not what the slot was made for: the config, or "
				 "this slot's config_mac, is damaged or was replaced (put back a copy of the "
				 "config; check names damaged slots)");
	}
	r = r ?: crypt_key_from_master(m->p, out);
	EVP_CIPHER_CTX_free(c);
	crypt_secret_free(wk);
	crypt_secret_free(m);
	return r;
}

/* --- envelope ----------------------------------------------------------------------------- */

uint64_t crypt_sealed_size(uint64_t plain, uint32_t chunk)
{
	return CRYPT_HEADER + plain + crypt_nchunks(plain, chunk) * CRYPT_TAG;
}

int crypt_plain_size(uint64_t sealed, uint32_t chunk, uint64_t *plain)
{
	if (sealed < CRYPT_HEADER + CRYPT_TAG)
		return -EBADMSG;
	uint64_t body = sealed - CRYPT_HEADER, n = (body + chunk + CRYPT_TAG - 1) / (chunk + CRYPT_TAG);
	uint64_t p = body - n * CRYPT_TAG;
	if (body < n * CRYPT_TAG || crypt_nchunks(p, chunk) != n)
		return -EBADMSG;
	*plain = p;
	return 0;
}

struct crypt_obj {
	unsigned char key[32]; /* the object key */
	unsigned char hdr[CRYPT_HEADER];
	uint32_t chunk;
	EVP_CIPHER_CTX *enc;   /* sealing's, made at the first seal */
	size_t namelen;
	char name[];
};

static int obj_make(const struct crypt_key *k, const char *name, uint32_t chunk,
		    const unsigned char *hdr, struct crypt_obj **out)
{
	size_t nl = strlen(name);
	if (chunk < CRYPT_MIN_CHUNK || chunk > CRYPT_MAX_CHUNK || nl > 1024)
		return -EINVAL;
	struct crypt_obj *o = calloc(1, sizeof(*o) + nl + 1);
	if (!o)
		return -ENOMEM;
	memcpy(o->hdr, hdr, CRYPT_HEADER);
	memcpy(o->name, name, nl + 1);
	o->namelen = nl;
	o->chunk = chunk;
	static const char label[] = "cassbackup object v1";
	int r = hmac(data_of(k), CRYPT_KEY_LEN, label, sizeof(label) - 1, hdr + 8, CRYPT_SALT, o->key);
	if (r < 0) {
		crypt_obj_free(o);
		return r;
	}
	*out = o;
	return 0;
}

int crypt_obj_new(const struct crypt_key *k, const char *name, uint32_t chunk,
		  struct crypt_obj **out)
{
	unsigned char hdr[CRYPT_HEADER];
	memcpy(hdr, CRYPT_MAGIC, 8);
	if (getrandom(hdr + 8, CRYPT_SALT, 0) != CRYPT_SALT)
		return -EIO;
	return obj_make(k, name, chunk, hdr, out);
}

int crypt_obj_load(const struct crypt_key *k, const char *name, uint32_t chunk,
		   const unsigned char *hdr, struct crypt_obj **out)
{
	if (memcmp(hdr, CRYPT_MAGIC, 8) != 0)
		return -EBADMSG;
	return obj_make(k, name, chunk, hdr, out);
}

void crypt_obj_free(struct crypt_obj *o)
{
	if (!o)
		return;
	EVP_CIPHER_CTX_free(o->enc);
	OPENSSL_cleanse(o->key, sizeof(o->key));
	free(o);
}

const unsigned char *crypt_obj_header(const struct crypt_obj *o)
{
	return o->hdr;
}

static void chunk_nonce(uint64_t idx, unsigned char nonce[12])
{
	memset(nonce, 0, 4);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (unsigned char)(idx >> (56 - 8 * i));
}

/* AAD of chunk idx: u8 final | u64 LE idx | name. aad must hold 9 + namelen bytes. */
static size_t chunk_aad(const struct crypt_obj *o, uint64_t idx, bool final, unsigned char *aad)
{
	aad[0] = final;
	for (int i = 0; i < 8; i++)
		aad[1 + i] = (unsigned char)(idx >> (8 * i));
	memcpy(aad + 9, o->name, o->namelen);
	return 9 + o->namelen;
}

int crypt_obj_seal(struct crypt_obj *o, uint64_t idx, bool final, const void *in, size_t len,
		   void *out)
{
	if (len > o->chunk || (!final && len != o->chunk))
		return -EINVAL;
	bool first = !o->enc;
	if (first && !(o->enc = EVP_CIPHER_CTX_new()))
		return -ENOMEM;
	unsigned char nonce[12], aad[9 + 1025];
	chunk_nonce(idx, nonce);
	size_t al = chunk_aad(o, idx, final, aad);
	/* the key schedule once; each later chunk sets only its nonce */
	if (first && !EVP_EncryptInit_ex(o->enc, EVP_aes_256_gcm(), NULL, o->key, NULL))
		return -EIO;
	return gcm(o->enc, true, NULL, nonce, aad, al, in, len, out);
}

void *crypt_ctx_new(const struct crypt_obj *o)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	if (c && !EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, o->key, NULL)) {
		EVP_CIPHER_CTX_free(c);
		c = NULL;
	}
	return c;
}

void crypt_ctx_free(void *c)
{
	EVP_CIPHER_CTX_free(c);
}

int crypt_obj_open_one(const struct crypt_obj *o, void *c, uint64_t idx, uint64_t nchunks,
		       const void *in, size_t n, void *out)
{
	bool final = idx + 1 == nchunks;
	if (idx >= nchunks || n < CRYPT_TAG || n > (size_t)o->chunk + CRYPT_TAG ||
	    (!final && n != (size_t)o->chunk + CRYPT_TAG))
		return -EBADMSG;
	unsigned char nonce[12], aad[9 + 1025];
	chunk_nonce(idx, nonce);
	size_t al = chunk_aad(o, idx, final, aad);
	return gcm(c, false, NULL, nonce, aad, al, in, n - CRYPT_TAG, out);
}

int crypt_obj_open(const struct crypt_obj *o, uint64_t first, uint64_t nchunks, const void *in,
		   size_t inlen, void *out, size_t *outlen)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	if (!c)
		return -ENOMEM;
	int r = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, o->key, NULL) ? 0 : -EIO;
	const unsigned char *p = in;
	unsigned char *q = out;
	size_t left = inlen, whole = (size_t)o->chunk + CRYPT_TAG;
	unsigned char nonce[12], aad[9 + 1025];
	for (uint64_t i = first; r == 0 && left; i++) {
		bool final = i + 1 == nchunks;
		size_t n = left < whole ? left : whole;
		if (i >= nchunks || n < CRYPT_TAG || (!final && n != whole)) {
			r = -EBADMSG;
			break;
		}
		chunk_nonce(i, nonce);
		size_t al = chunk_aad(o, i, final, aad);
		r = gcm(c, false, NULL, nonce, aad, al, p, n - CRYPT_TAG, q);
		p += n;
		q += n - CRYPT_TAG;
		left -= n;
	}
	EVP_CIPHER_CTX_free(c);
	if (r == 0)
		*outlen = (size_t)(q - (unsigned char *)out);
	return r == -EIO ? -EIO : r;
}

int crypt_seal_buf(const struct crypt_key *k, const char *name, uint32_t chunk, const void *plain,
		   size_t len, unsigned char **out, size_t *outlen)
{
	struct crypt_obj *o;
	int r = crypt_obj_new(k, name, chunk, &o);
	if (r < 0)
		return r;
	uint64_t total = crypt_sealed_size(len, chunk), n = crypt_nchunks(len, chunk);
	unsigned char *buf = total > SIZE_MAX ? NULL : malloc((size_t)total);
	r = buf ? 0 : -ENOMEM;
	if (r == 0)
		memcpy(buf, o->hdr, CRYPT_HEADER);
	const unsigned char *p = plain;
	unsigned char *q = buf + CRYPT_HEADER;
	for (uint64_t i = 0; r == 0 && i < n; i++) {
		size_t l = i + 1 == n ? len - (size_t)i * chunk : chunk;
		r = crypt_obj_seal(o, i, i + 1 == n, p, l, q);
		p += l;
		q += l + CRYPT_TAG;
	}
	crypt_obj_free(o);
	if (r < 0) {
		free(buf);
		return r;
	}
	*out = buf;
	*outlen = (size_t)total;
	return 0;
}

int crypt_open_buf(const struct crypt_key *k, const char *name, uint32_t chunk, const void *sealed,
		   size_t len, char **out, size_t *outlen)
{
	uint64_t plain;
	struct crypt_obj *o = NULL;
	int r = crypt_plain_size(len, chunk, &plain) ?: crypt_obj_load(k, name, chunk, sealed, &o);
	char *buf = r < 0 ? NULL : malloc((size_t)plain + 1);
	if (r == 0 && !buf)
		r = -ENOMEM;
	size_t got = 0;
	r = r ?: crypt_obj_open(o, 0, crypt_nchunks(plain, chunk), (const unsigned char *)sealed + CRYPT_HEADER,
				len - CRYPT_HEADER, buf, &got);
	crypt_obj_free(o);
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[got] = 0;
	*out = buf;
	*outlen = got;
	return 0;
}
