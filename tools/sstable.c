/* sstable.c: see sstable.h. */
#include "sstable.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* Splits at '-' into at most 8 fields; returns the count. */
static int fields(const char *name, const char *start[8], size_t len[8])
{
	int n = 0;
	const char *p = name;
	while (n < 8) {
		const char *d = strchr(p, '-');
		start[n] = p;
		len[n] = d ? (size_t)(d - p) : strlen(p);
		n++;
		if (!d)
			break;
		p = d + 1;
	}
	return n;
}

static bool is_format(const char *s, size_t n)
{
	return n == 3 && (!strncmp(s, "big", 3) || !strncmp(s, "bti", 3));
}

static bool is_version(const char *s, size_t n)
{
	return n == 2 && islower((unsigned char)s[0]) && islower((unsigned char)s[1]);
}

/* Index of the generation field, or -1. */
static int gen_field(const char *name, const char *f[8], size_t l[8])
{
	int n = fields(name, f, l);
	if (n == 4 && is_version(f[0], l[0]) && is_format(f[2], l[2]) && l[1] > 0)
		return 1;
	if (n == 5 && is_version(f[2], l[2]) && l[3] > 0 && strspn(f[3], "0123456789") == l[3])
		return 3; /* 2.x: ks-table-version-generation-Component */
	return -1;
}

size_t sstable_prefix_len(const char *name)
{
	const char *f[8];
	size_t l[8];
	if (gen_field(name, f, l) < 0)
		return 0;
	return (size_t)(strrchr(name, '-') - name) + 1;
}

bool sstable_generation(const char *name, size_t *start, size_t *len)
{
	const char *f[8];
	size_t l[8];
	int g = gen_field(name, f, l);
	if (g < 0)
		return false;
	*start = (size_t)(f[g] - name);
	*len = l[g];
	return true;
}

int sstable_with_generation(const char *name, uint64_t gen, struct strbuf *out)
{
	size_t s, n;
	if (!sstable_generation(name, &s, &n))
		return -EINVAL;
	out->len = 0;
	int r = sb_append(out, name, s);
	if (r == 0)
		r = sb_printf(out, "%llu%s", (unsigned long long)gen, name + s + n);
	return r;
}

bool sstable_is_statistics(const char *name)
{
	size_t p = sstable_prefix_len(name);
	return p && !strcmp(name + p, "Statistics.db");
}

bool sstable_component_rewritten_in_place(const char *name)
{
	size_t p = sstable_prefix_len(name);
	return p && (!strcmp(name + p, "Statistics.db") || !strcmp(name + p, "Summary.db"));
}

bool sstable_rewritten_component_there(int dfd, const char *name)
{
	struct stat st;
	return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	       st.st_size > 0;
}

uint64_t sstable_numeric_generation(const char *name)
{
	size_t s, n;
	if (!sstable_generation(name, &s, &n) || strspn(name + s, "0123456789") != n || n > 18)
		return 0;
	return strtoull(name + s, NULL, 10);
}

enum digest_kind digest_kind_of(const char *name)
{
	size_t p = sstable_prefix_len(name);
	if (!p)
		return DIGEST_NONE;
	const char *c = name + p;
	if (!strcmp(c, "Digest.crc32"))
		return DIGEST_CRC32;
	if (!strcmp(c, "Digest.adler32"))
		return DIGEST_ADLER32;
	if (!strcmp(c, "Digest.sha1"))
		return DIGEST_SHA1;
	return DIGEST_NONE;
}

static int parse_u32(const char *s, size_t len, uint32_t *out)
{
	size_t i = 0;
	while (i < len && isspace((unsigned char)s[i]))
		i++;
	size_t j = i;
	uint64_t v = 0;
	while (j < len && isdigit((unsigned char)s[j]) && v <= UINT32_MAX)
		v = v * 10 + (uint64_t)(s[j++] - '0');
	size_t k = j;
	while (k < len && isspace((unsigned char)s[k]))
		k++;
	if (j == i || k != len || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

int digest_parse(const char *file_name, const char *contents, size_t len, struct digest *d,
		 struct strbuf *err)
{
	*d = (struct digest){.kind = digest_kind_of(file_name)};
	switch (d->kind) {
	case DIGEST_CRC32:
	case DIGEST_ADLER32:
		if (parse_u32(contents, len, &d->value) == 0)
			return 0;
		break;
	case DIGEST_SHA1:
		/* 2.0: "<40 hex>  <file>"; 2.1 wrote an Adler-32 in decimal under this name. */
		if (len >= 40 && strspn(contents, "0123456789abcdefABCDEF") >= 40 &&
		    (len == 40 || isspace((unsigned char)contents[40]))) {
			char hex[41];
			memcpy(hex, contents, 40);
			hex[40] = '\0';
			for (int i = 0; i < 40; i++)
				hex[i] = (char)tolower((unsigned char)hex[i]);
			if (hex_decode(hex, d->sha1, 20) == 0)
				return 0;
		}
		if (parse_u32(contents, len, &d->value) == 0) {
			d->kind = DIGEST_ADLER32;
			return 0;
		}
		break;
	default:
		sb_printf(err, "%s is not a digest file", file_name);
		return -EINVAL;
	}
	sb_printf(err, "%s: unreadable digest \"%.*s\"", file_name, (int)(len > 60 ? 60 : len), contents);
	return -EINVAL;
}

int data_sums_init(struct data_sums *s, bool want_sha1)
{
	*s = (struct data_sums){.crc32 = (uint32_t)crc32(0, NULL, 0), .adler32 = (uint32_t)adler32(0, NULL, 0)};
	if (want_sha1) {
		EVP_MD_CTX *c = EVP_MD_CTX_new();
		if (!c || EVP_DigestInit_ex(c, EVP_sha1(), NULL) != 1) {
			EVP_MD_CTX_free(c);
			return -ENOMEM;
		}
		s->sha1_ctx = c;
	}
	return 0;
}

void data_sums_update(struct data_sums *s, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	while (len) { /* zlib takes uInt lengths */
		uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
		s->crc32 = (uint32_t)crc32(s->crc32, p, n);
		s->adler32 = (uint32_t)adler32(s->adler32, p, n);
		if (s->sha1_ctx)
			EVP_DigestUpdate(s->sha1_ctx, p, n);
		p += n;
		len -= n;
	}
}

void data_sums_final(struct data_sums *s)
{
	if (s->sha1_ctx) {
		unsigned int n = 0;
		EVP_DigestFinal_ex(s->sha1_ctx, s->sha1, &n);
		EVP_MD_CTX_free(s->sha1_ctx);
		s->sha1_ctx = NULL;
	}
}

int toc_each(const char *contents, size_t len, int (*cb)(void *ctx, const char *component), void *ctx)
{
	size_t i = 0;
	char line[256];
	while (i < len) {
		size_t j = i;
		while (j < len && contents[j] != '\n')
			j++;
		size_t a = i, b = j;
		while (a < b && isspace((unsigned char)contents[a]))
			a++;
		while (b > a && isspace((unsigned char)contents[b - 1]))
			b--;
		if (b > a) {
			if (b - a >= sizeof(line))
				return -EINVAL;
			memcpy(line, contents + a, b - a);
			line[b - a] = '\0';
			int r = cb(ctx, line);
			if (r)
				return r;
		}
		i = j + 1;
	}
	return 0;
}

/* Parses a JSON string literal at *p (which points at the opening quote) into out. */
static int json_string(const char **p, const char *end, struct strbuf *out)
{
	const char *s = *p + 1;
	out->len = 0;
	sb_append(out, "", 0);
	while (s < end && *s != '"') {
		char c = *s++;
		if (c == '\\') {
			if (s >= end)
				return -EINVAL;
			c = *s++;
			switch (c) {
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'u': {
				unsigned v;
				if (end - s < 4 || sscanf(s, "%4x", &v) != 1 || v > 0x7f)
					return -EINVAL; /* file names are ASCII */
				c = (char)v;
				s += 4;
				break;
			}
			default: break; /* \" \\ \/ */
			}
		}
		if (sb_append(out, &c, 1) < 0)
			return -ENOMEM;
	}
	if (s >= end)
		return -EINVAL;
	*p = s + 1;
	return 0;
}

int manifest_files_each(const char *json, size_t len, int (*cb)(void *ctx, const char *file), void *ctx)
{
	const char *end = json + len, *p = json;
	struct strbuf s = {0};
	int r = -EINVAL;
	/* Find the key "files" at the top level of the object. */
	while (p < end) {
		p = memchr(p, '"', (size_t)(end - p));
		if (!p)
			break;
		if ((r = json_string(&p, end, &s)) < 0)
			break;
		r = -EINVAL;
		if (strcmp(s.buf, "files") != 0)
			continue;
		while (p < end && (isspace((unsigned char)*p) || *p == ':'))
			p++;
		if (p >= end || *p != '[')
			break;
		p++;
		for (;;) {
			while (p < end && (isspace((unsigned char)*p) || *p == ','))
				p++;
			if (p < end && *p == ']') {
				r = 0;
				break;
			}
			if (p >= end || *p != '"' || json_string(&p, end, &s) < 0)
				break;
			if ((r = cb(ctx, s.buf)) != 0)
				break;
			r = -EINVAL;
		}
		break;
	}
	sb_free(&s);
	return r;
}
