/* awscred.c: see awscred.h. */
#include "awscred.h"
#include "backend_i.h"
#include "s3.h"
#include "sigv4.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NS INT64_C(1000000000)
#define REFRESH_MARGIN_NS (300 * NS) /* as the SDKs: 5 minutes before the expiry */
#define RETRY_NS (10 * NS)            /* a failed refresh is tried again this much later */
#define HTTP_MAX_BODY 65536
#define PROFILE_DEPTH 4               /* source_profile chains at most this long */

enum source_kind { SRC_EXPLICIT, SRC_ENV, SRC_PROFILE_KEYS, SRC_PROFILE_ROLE, SRC_PROCESS,
		   SRC_WEB_IDENTITY, SRC_CONTAINER, SRC_IMDS };

struct awscred {
	enum source_kind kind;
	char *source;   /* words for awscred_source */
	char *region, *ca_file;
	char *profile;  /* the profile of SRC_PROFILE_*, SRC_PROCESS */
	char *arg;      /* web identity: the token file; container/IMDS: the URL/endpoint */
	char *role_arn, *session_name;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct awscred_keys keys;
	bool refreshing;
	int64_t next_try_ns;
};

static int64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static void wipe_free(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

void awscred_keys_clear(struct awscred_keys *k)
{
	wipe_free(k->access_key);
	wipe_free(k->secret_key);
	wipe_free(k->token);
	*k = (struct awscred_keys){0};
}

static int keys_set(struct awscred_keys *k, const char *ak, const char *sk, const char *tok,
		    int64_t expires)
{
	struct awscred_keys n = {.access_key = strdup(ak), .secret_key = strdup(sk),
				 .token = tok && *tok ? strdup(tok) : NULL, .expires_ns = expires};
	if (!n.access_key || !n.secret_key || (tok && *tok && !n.token)) {
		awscred_keys_clear(&n);
		return -ENOMEM;
	}
	awscred_keys_clear(k);
	*k = n;
	return 0;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

/* --- HTTP (STS, container, IMDS) ----------------------------------------------------------- */

struct http_call {
	const char *method, *url, *body;
	struct curl_slist *headers;
	const char *ca_file;
	long connect_timeout;
};

static size_t http_body(char *p, size_t size, size_t n, void *ud)
{
	struct strbuf *sb = ud;
	if (sb->len + size * n > HTTP_MAX_BODY)
		return 0;
	return sb_append(sb, p, size * n) < 0 ? 0 : size * n;
}

/* One request. 0 with *status and the body in *out (the caller's), or -EIO with why. */
static int http_do(const struct http_call *c, long *status, struct strbuf *out, struct strbuf *why)
{
	CURL *h = curl_easy_init();
	if (!h)
		return -ENOMEM;
	curl_easy_setopt(h, CURLOPT_URL, c->url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->connect_timeout);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	if (c->headers)
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
	if (c->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	if (c->body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body);
	}
	if (strcmp(c->method, c->body ? "POST" : "GET"))
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
	CURLcode cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(h);
	if (cc != CURLE_OK) {
		sb_printf(why, "%s: %s", c->url, curl_easy_strerror(cc));
		return -EIO;
	}
	return 0;
}

/* Temporary keys until exp (ISO 8601; NULL: they do not expire). An Expiration that is not a
 * time is refused: taken for "never", the keys would never be fetched again. */
static int keys_with_expiration(struct awscred_keys *k, const char *ak, const char *sk,
				const char *tok, const char *exp, const char *what, struct strbuf *why)
{
	int64_t until = exp ? s3_iso8601_ns(exp) : 0;
	if (exp && !until) {
		sb_printf(why, "%s: Expiration '%.40s' is not an ISO 8601 time", what, exp);
		return -EACCES;
	}
	return keys_set(k, ak, sk, tok, until);
}

/* The keys of a JSON document as the container endpoint, IMDS and credential_process give
 * them; token_name is "Token" or "SessionToken". */
static int keys_from_json(const struct strbuf *body, const char *token_name, struct awscred_keys *k,
			  const char *what, struct strbuf *why)
{
	json_t *j = json_loadb(body->buf ? body->buf : "", body->len, 0, NULL);
	const char *ak = json_string_value(json_object_get(j, "AccessKeyId"));
	const char *sk = json_string_value(json_object_get(j, "SecretAccessKey"));
	const char *tok = json_string_value(json_object_get(j, token_name));
	const char *exp = json_string_value(json_object_get(j, "Expiration"));
	int r;
	if (!ak || !sk) {
		sb_printf(why, "%s: no AccessKeyId and SecretAccessKey in its answer", what);
		r = -EACCES;
	} else {
		r = keys_with_expiration(k, ak, sk, tok, exp, what, why);
	}
	json_decref(j);
	return r;
}

/* <Credentials> of an STS answer. */
static int keys_from_sts(const struct strbuf *body, struct awscred_keys *k, const char *what,
			 struct strbuf *why)
{
	const char *p = body->buf ? body->buf : "", *end = p + body->len;
	char *ak = s3_xml_text(p, end, "AccessKeyId"), *sk = s3_xml_text(p, end, "SecretAccessKey");
	char *tok = s3_xml_text(p, end, "SessionToken"), *exp = s3_xml_text(p, end, "Expiration");
	int r;
	if (!ak || !sk) {
		sb_printf(why, "%s: no credentials in STS's answer", what);
		r = -EACCES;
	} else {
		r = keys_with_expiration(k, ak, sk, tok, exp, what, why);
	}
	wipe_free(ak);
	wipe_free(sk);
	wipe_free(tok);
	free(exp);
	return r;
}

static int form_add(struct strbuf *sb, const char *name, const char *value)
{
	return sb_printf(sb, "%s%s=", sb->len ? "&" : "", name) ?: s3_uri_encode(sb, value, false);
}

/* The headers of an STS call: its content type, and when k is given, its signature by
 * k (sigv4.c, as for S3). */
static int sts_headers(struct awscred *a, const char *url, const struct strbuf *body,
		       const struct awscred_keys *k, struct curl_slist **hdr)
{
	int r = 0;
	struct curl_slist *l = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
	if (l && k && k->token) {
		struct strbuf tok = {0};
		struct curl_slist *n = sb_printf(&tok, "x-amz-security-token: %s", k->token) < 0
					       ? NULL : curl_slist_append(l, tok.buf);
		if (tok.buf)
			explicit_bzero(tok.buf, tok.len);
		sb_free(&tok);
		r = n ? 0 : -ENOMEM;
	}
	if (!l)
		r = -ENOMEM;
	if (!r && k) {
		unsigned char md[SHA256_DIGEST_LENGTH];
		char hash[65];
		SHA256((const unsigned char *)body->buf, body->len, md);
		hex_encode(md, sizeof(md), hash);
		struct sigv4_request sr = {.method = "POST", .url = url, .payload_hash = hash,
					   .region = a->region, .service = "sts",
					   .access_key = k->access_key, .secret_key = k->secret_key,
					   .now = (int64_t)time(NULL)};
		r = sigv4_sign(&sr, &l);
	}
	*hdr = l;
	return r;
}

/* An STS action (form fields in body), signed with k when k is given. */
static int sts_call(struct awscred *a, const char *action, struct strbuf *body,
		    const struct awscred_keys *k, struct awscred_keys *out, struct strbuf *why)
{
	const char *ep = env("AWS_ENDPOINT_URL_STS") ?: env("AWS_ENDPOINT_URL");
	struct strbuf url = {0}, ans = {0};
	int r = 0;
	if (ep) {
		size_t n = strlen(ep);
		while (n && ep[n - 1] == '/')
			n--;
		r = sb_printf(&url, "%.*s/", (int)n, ep);
	} else {
		r = sb_printf(&url, "https://sts.%s.amazonaws.com/", a->region);
	}
	struct curl_slist *hdr = NULL;
	r = r ?: form_add(body, "Version", "2011-06-15") ?: sts_headers(a, url.buf, body, k, &hdr);
	struct http_call c = {.method = "POST", .url = url.buf, .body = body->buf, .headers = hdr,
			      .ca_file = a->ca_file, .connect_timeout = 10};
	long status = 0;
	r = r ?: http_do(&c, &status, &ans, why);
	if (r == 0 && status != 200) {
		char *code = ans.buf ? s3_xml_text(ans.buf, ans.buf + ans.len, "Code") : NULL;
		char *msg = ans.buf ? s3_xml_text(ans.buf, ans.buf + ans.len, "Message") : NULL;
		sb_printf(why, "STS %s of %s at %s: HTTP %ld %s%s%s", action, a->role_arn, url.buf,
			  status, code ? code : "", msg ? ": " : "", msg ? msg : "");
		free(code);
		free(msg);
		r = -EACCES;
	}
	r = r ?: keys_from_sts(&ans, out, action, why);
	for (struct curl_slist *i = hdr; i; i = i->next)
		explicit_bzero(i->data, strlen(i->data));
	curl_slist_free_all(hdr);
	sb_free(&url);
	sb_free(&ans);
	return r;
}

/* --- the shared config and credentials files ----------------------------------------------- */

enum pkey { P_AK, P_SK, P_TOKEN, P_ROLE, P_SOURCE, P_PROCESS, P_SESSION, P_EXTERNAL, P_CRED_SOURCE,
	    P_N };
static const char *const pkey_names[P_N] = {
	"aws_access_key_id", "aws_secret_access_key", "aws_session_token", "role_arn",
	"source_profile", "credential_process", "role_session_name", "external_id",
	"credential_source",
};

struct profile {
	char *v[P_N];
	bool found; /* its section is in either file */
	char files[2][512];
};

static void profile_clear(struct profile *p)
{
	for (int i = 0; i < P_N; i++)
		wipe_free(p->v[i]);
}

/* Reads the keys of section want from an INI file into the unset p->v[]. -errno; -ENOENT
 * when the file is absent. */
static int ini_section(const char *path, const char *want, struct profile *p)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char line[4096];
	bool in = false;
	while (fgets(line, sizeof(line), f)) {
		char *s = line + strspn(line, " \t");
		s[strcspn(s, "\r\n")] = '\0';
		if (*s == '[') {
			char *e = strchr(s, ']');
			if (e)
				*e = '\0';
			char *name = s + 1 + strspn(s + 1, " \t");
			size_t n = strlen(name);
			while (n && (name[n - 1] == ' ' || name[n - 1] == '\t'))
				name[--n] = '\0';
			in = !strcmp(name, want);
			p->found |= in;
			continue;
		}
		char *eq = strchr(s, '=');
		if (!in || !eq || *s == '#' || *s == ';')
			continue;
		char *ke = eq;
		while (ke > s && (ke[-1] == ' ' || ke[-1] == '\t'))
			ke--;
		*ke = '\0';
		char *v = eq + 1 + strspn(eq + 1, " \t"), *ve = v + strlen(v);
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			*--ve = '\0';
		for (int i = 0; i < P_N; i++)
			if (!strcmp(s, pkey_names[i]) && !p->v[i] && !(p->v[i] = strdup(v))) {
				fclose(f);
				explicit_bzero(line, sizeof(line));
				return -ENOMEM;
			}
	}
	explicit_bzero(line, sizeof(line));
	fclose(f);
	return 0;
}

/* Profile name from the credentials file ([name]) and the config file ([profile name], or
 * [default]). */
static int profile_read(const char *name, struct profile *p)
{
	const char *home = env("HOME") ?: "/";
	if (env("AWS_SHARED_CREDENTIALS_FILE"))
		snprintf(p->files[0], sizeof(p->files[0]), "%s", env("AWS_SHARED_CREDENTIALS_FILE"));
	else
		snprintf(p->files[0], sizeof(p->files[0]), "%s/.aws/credentials", home);
	if (env("AWS_CONFIG_FILE"))
		snprintf(p->files[1], sizeof(p->files[1]), "%s", env("AWS_CONFIG_FILE"));
	else
		snprintf(p->files[1], sizeof(p->files[1]), "%s/.aws/config", home);
	char section[300];
	snprintf(section, sizeof(section), strcmp(name, "default") ? "profile %s" : "%s", name);
	int r = ini_section(p->files[0], name, p);
	if (r == -ENOMEM)
		return r;
	r = ini_section(p->files[1], section, p);
	return r == -ENOMEM ? r : 0;
}

/* Keys of profile name: role_arn (AssumeRole with its source_profile's keys), static keys, or
 * credential_process. -ENOENT when the profile has none of them (or is absent). */
static int profile_keys(struct awscred *a, const char *name, int depth, struct awscred_keys *out,
			enum source_kind *kind, struct strbuf *why);

/* Whether word (up to a blank) is a shell variable assignment, NAME=value. */
static bool is_assignment(const char *word)
{
	size_t name = strspn(word, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_");
	return name > 0 && !(word[0] >= '0' && word[0] <= '9') && word[name] == '=';
}

/* The program a credential_process line runs (its first word, quotes dropped), for messages:
 * its arguments may carry a secret (a token for a vault), and so never are. */
static void program_of(const char *cmd, char *out, size_t n)
{
	cmd += strspn(cmd, " \t");
	while (is_assignment(cmd)) { /* "VAR=value program": the shell's, and the value secret */
		cmd += strcspn(cmd, " \t");
		cmd += strspn(cmd, " \t");
	}
	size_t len = *cmd == '"' || *cmd == '\'' ? strcspn(cmd + 1, *cmd == '"' ? "\"" : "'")
						  : strcspn(cmd, " \t");
	snprintf(out, n, "%.*s", (int)len, cmd + (*cmd == '"' || *cmd == '\''));
}

static int run_process(const char *cmd, struct awscred_keys *out, struct strbuf *why)
{
	char prog[256];
	program_of(cmd, prog, sizeof(prog));
	FILE *f = popen(cmd, "re");
	if (!f) {
		sb_printf(why, "credential_process %s: %s", prog, strerror(errno));
		return -EACCES;
	}
	struct strbuf body = {0};
	char buf[4096];
	size_t n;
	int r = 0;
	while (!r && (n = fread(buf, 1, sizeof(buf), f)) > 0)
		r = body.len + n > HTTP_MAX_BODY ? -EFBIG : sb_append(&body, buf, n);
	int st = pclose(f);
	if (r == 0 && (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st))) {
		sb_printf(why, "credential_process %s: exited with status %d (its own words, if any, "
			  "are on stderr)", prog, st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		r = -EACCES;
	}
	r = r ?: keys_from_json(&body, "SessionToken", out, "credential_process", why);
	if (body.buf)
		explicit_bzero(body.buf, body.len);
	sb_free(&body);
	explicit_bzero(buf, sizeof(buf));
	return r;
}

static int assume_role(struct awscred *a, const struct profile *p, const char *name, int depth,
		       struct awscred_keys *out, struct strbuf *why)
{
	const char *src = p->v[P_SOURCE];
	if (!src) {
		sb_printf(why, "profile %s: role_arn without source_profile (credential_source %s is not "
			  "supported)", name, p->v[P_CRED_SOURCE] ? p->v[P_CRED_SOURCE] : "unset");
		return -EACCES;
	}
	if (depth >= PROFILE_DEPTH) {
		sb_printf(why, "profile %s: source_profile chain longer than %d", name, PROFILE_DEPTH);
		return -EACCES;
	}
	struct awscred_keys base = {0};
	enum source_kind k;
	int r;
	if (!strcmp(src, name) && p->v[P_AK] && p->v[P_SK]) /* as botocore: its own static keys */
		r = keys_set(&base, p->v[P_AK], p->v[P_SK], p->v[P_TOKEN], 0);
	else
		r = profile_keys(a, src, depth + 1, &base, &k, why);
	if (r == -ENOENT) {
		sb_printf(why, "profile %s: source_profile %s has no credentials", name, src);
		r = -EACCES;
	}
	struct strbuf body = {0};
	char session[64];
	snprintf(session, sizeof(session), "cassbackup-%ld", (long)getpid());
	r = r ?: form_add(&body, "Action", "AssumeRole") ?:
	    form_add(&body, "RoleArn", p->v[P_ROLE]) ?:
	    form_add(&body, "RoleSessionName", p->v[P_SESSION] ? p->v[P_SESSION] : session);
	if (!r && p->v[P_EXTERNAL])
		r = form_add(&body, "ExternalId", p->v[P_EXTERNAL]);
	r = r ?: sts_call(a, "AssumeRole", &body, &base, out, why);
	awscred_keys_clear(&base);
	sb_free(&body);
	return r;
}

static int profile_keys(struct awscred *a, const char *name, int depth, struct awscred_keys *out,
			enum source_kind *kind, struct strbuf *why)
{
	struct profile p = {0};
	int r = profile_read(name, &p);
	if (r < 0) {
		profile_clear(&p);
		return r;
	}
	if (depth == 0) {
		free(a->role_arn);
		a->role_arn = NULL;
	}
	if (p.v[P_ROLE]) {
		if (depth == 0 && !(a->role_arn = strdup(p.v[P_ROLE])))
			r = -ENOMEM;
		*kind = SRC_PROFILE_ROLE;
		r = r ?: assume_role(a, &p, name, depth, out, why);
	} else if (p.v[P_AK] && p.v[P_SK]) {
		*kind = SRC_PROFILE_KEYS;
		r = keys_set(out, p.v[P_AK], p.v[P_SK], p.v[P_TOKEN], 0);
	} else if (p.v[P_PROCESS]) {
		*kind = SRC_PROCESS;
		r = run_process(p.v[P_PROCESS], out, why);
	} else if (p.found && (p.v[P_AK] || p.v[P_SK])) {
		sb_printf(why, "profile %s: %s without %s", name, p.v[P_AK] ? pkey_names[P_AK] :
			  pkey_names[P_SK], p.v[P_AK] ? pkey_names[P_SK] : pkey_names[P_AK]);
		r = -EACCES;
	} else {
		r = -ENOENT;
		if (!p.found)
			sb_printf(why, "profile %s is in neither %s nor %s", name, p.files[0], p.files[1]);
		else
			sb_printf(why, "profile %s has no aws_access_key_id, role_arn or credential_process "
				  "in %s or %s", name, p.files[0], p.files[1]);
	}
	profile_clear(&p);
	return r;
}

/* --- web identity, container, IMDS ----------------------------------------------------------- */

static int web_identity(struct awscred *a, struct awscred_keys *out, struct strbuf *why)
{
	char *token = NULL;
	int r = read_small_file(a->arg, 1 << 20, &token, NULL);
	if (r < 0) {
		sb_printf(why, "AWS_WEB_IDENTITY_TOKEN_FILE %s: %s", a->arg, strerror(-r));
		return -EACCES;
	}
	token[strcspn(token, "\r\n")] = '\0';
	struct strbuf body = {0};
	r = form_add(&body, "Action", "AssumeRoleWithWebIdentity") ?:
	    form_add(&body, "RoleArn", a->role_arn) ?:
	    form_add(&body, "RoleSessionName", a->session_name) ?:
	    form_add(&body, "WebIdentityToken", token);
	r = r ?: sts_call(a, "AssumeRoleWithWebIdentity", &body, NULL, out, why);
	wipe_free(token);
	if (body.buf)
		explicit_bzero(body.buf, body.len);
	sb_free(&body);
	return r;
}

static int container(struct awscred *a, struct awscred_keys *out, struct strbuf *why)
{
	struct curl_slist *hdr = NULL;
	struct strbuf auth = {0}, ans = {0};
	char *tok = NULL;
	const char *file = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	int r = 0;
	if (file) {
		if ((r = read_small_file(file, 16384, &tok, NULL)) < 0) {
			sb_printf(why, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE %s: %s", file, strerror(-r));
			return -EACCES;
		}
		tok[strcspn(tok, "\r\n")] = '\0';
	} else if (env("AWS_CONTAINER_AUTHORIZATION_TOKEN") &&
		   !(tok = strdup(env("AWS_CONTAINER_AUTHORIZATION_TOKEN")))) {
		return -ENOMEM;
	}
	if (tok && strpbrk(tok, "\r\n")) { /* one header line, nothing smuggled after it */
		sb_printf(why, "the container authorization token holds a line break");
		wipe_free(tok);
		return -EACCES;
	}
	if (tok && !(r = sb_printf(&auth, "Authorization: %s", tok)) &&
	    !(hdr = curl_slist_append(NULL, auth.buf)))
		r = -ENOMEM;
	struct http_call c = {.method = "GET", .url = a->arg, .headers = hdr, .ca_file = a->ca_file,
			      .connect_timeout = 2};
	long status = 0;
	r = r ?: http_do(&c, &status, &ans, why);
	if (r == 0 && status != 200) {
		sb_printf(why, "container credentials %s: HTTP %ld", a->arg, status);
		r = -EACCES;
	}
	r = r ?: keys_from_json(&ans, "Token", out, a->arg, why);
	curl_slist_free_all(hdr);
	wipe_free(tok);
	if (auth.buf)
		explicit_bzero(auth.buf, auth.len);
	sb_free(&auth);
	if (ans.buf)
		explicit_bzero(ans.buf, ans.len);
	sb_free(&ans);
	return r;
}

/* One IMDS request (token: the IMDSv2 session token, NULL to ask for one). */
static int imds_call(struct awscred *a, const char *path, const char *token, struct strbuf *ans,
		     struct strbuf *why)
{
	struct strbuf url = {0}, h = {0};
	size_t n = strlen(a->arg);
	while (n && a->arg[n - 1] == '/')
		n--;
	int r = sb_printf(&url, "%.*s%s", (int)n, a->arg, path);
	r = r ?: token ? sb_printf(&h, "X-aws-ec2-metadata-token: %s", token)
		       : sb_puts(&h, "X-aws-ec2-metadata-token-ttl-seconds: 21600");
	struct curl_slist *hdr = r ? NULL : curl_slist_append(NULL, h.buf);
	struct http_call c = {.method = token ? "GET" : "PUT", .url = url.buf, .headers = hdr,
			      .connect_timeout = 1};
	long status = 0;
	r = hdr ? http_do(&c, &status, ans, why) : r ?: -ENOMEM;
	if (r == 0 && status != 200) {
		sb_printf(why, "instance metadata %s: HTTP %ld", url.buf, status);
		r = -EACCES;
	}
	curl_slist_free_all(hdr);
	sb_free(&url);
	sb_free(&h);
	return r;
}

static int imds(struct awscred *a, struct awscred_keys *out, struct strbuf *why)
{
	static const char base[] = "/latest/meta-data/iam/security-credentials/";
	struct strbuf tok = {0}, role = {0}, path = {0}, ans = {0};
	int r = imds_call(a, "/latest/api/token", NULL, &tok, why);
	r = r ?: imds_call(a, base, tok.buf ? tok.buf : "", &role, why);
	if (r == 0) {
		char *name = role.buf ? role.buf : "";
		name[strcspn(name, "\r\n")] = '\0';
		if (!*name || strchr(name, '/')) {
			sb_printf(why, "instance metadata %s: no IAM role attached to the instance", a->arg);
			r = -EACCES;
		}
		r = r ?: sb_printf(&path, "%s%s", base, name);
	}
	r = r ?: imds_call(a, path.buf, tok.buf ? tok.buf : "", &ans, why);
	r = r ?: keys_from_json(&ans, "Token", out, "instance metadata", why);
	sb_free(&tok);
	sb_free(&role);
	sb_free(&path);
	if (ans.buf)
		explicit_bzero(ans.buf, ans.len);
	sb_free(&ans);
	return r;
}

/* --- the chain ----------------------------------------------------------------------------- */

/* Fetches keys again from the source a was set to. */
static int fetch(struct awscred *a, struct awscred_keys *out, struct strbuf *why)
{
	enum source_kind k;
	switch (a->kind) {
	case SRC_PROFILE_KEYS:
	case SRC_PROFILE_ROLE:
	case SRC_PROCESS: {
		int r = profile_keys(a, a->profile, 0, out, &k, why);
		return r == -ENOENT ? -EACCES : r;
	}
	case SRC_WEB_IDENTITY: return web_identity(a, out, why);
	case SRC_CONTAINER: return container(a, out, why);
	case SRC_IMDS: return imds(a, out, why);
	default: return -EACCES; /* static keys are never fetched again */
	}
}

static int set_source(struct awscred *a, enum source_kind kind, const char *arg, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int set_source(struct awscred *a, enum source_kind kind, const char *arg, const char *fmt, ...)
{
	struct strbuf sb = {0};
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	a->kind = kind;
	free(a->source);
	a->source = sb_puts(&sb, buf) < 0 ? NULL : sb.buf;
	if (arg && !(a->arg = strdup(arg)))
		return -ENOMEM;
	return a->source ? 0 : -ENOMEM;
}

/* The host of an http:// URL (after "http://": up to the port, path, query or fragment), its
 * length in *n; -EINVAL when the authority holds userinfo ("user@host"), which would make
 * what looks like the host another's. */
static int url_host(const char *after_scheme, size_t *n)
{
	size_t auth = strcspn(after_scheme, "/?#");
	if (memchr(after_scheme, '@', auth))
		return -EINVAL;
	if (after_scheme[0] == '[') {
		const char *close = memchr(after_scheme, ']', auth);
		if (!close)
			return -EINVAL;
		*n = (size_t)(close - after_scheme) + 1;
	} else {
		const char *colon = memchr(after_scheme, ':', auth);
		*n = colon ? (size_t)(colon - after_scheme) : auth;
	}
	return 0;
}

/* Whether h (n bytes) is a dotted IPv4 address in 127.0.0.0/8. */
static bool ipv4_loopback(const char *h, size_t n)
{
	char buf[16];
	struct in_addr in;
	if (n >= sizeof(buf))
		return false;
	memcpy(buf, h, n);
	buf[n] = '\0';
	return inet_pton(AF_INET, buf, &in) == 1 && (ntohl(in.s_addr) >> 24) == 127;
}

/* Whether h (n bytes) is "[ADDR]" with ADDR an IPv6 address equal to want, however written. */
static bool ipv6_is(const char *h, size_t n, const struct in6_addr *want)
{
	char buf[INET6_ADDRSTRLEN + 2];
	struct in6_addr in;
	if (n < 3 || n >= sizeof(buf) || h[0] != '[' || h[n - 1] != ']')
		return false;
	memcpy(buf, h + 1, n - 2);
	buf[n - 2] = '\0';
	return inet_pton(AF_INET6, buf, &in) == 1 && !memcmp(&in, want, sizeof(in));
}

/* The EKS Pod Identity agent's IPv6 address, fd00:ec2::23. */
static const struct in6_addr eks_agent_v6 = {.s6_addr = {0xfd, 0, 0x0e, 0xc2, [15] = 0x23}};

/* True when a plain-http full URI goes where the SDKs let the container token go: loopback,
 * or the ECS and EKS Pod Identity agents' link-local addresses. Anything else needs https. */
static bool container_host_ok(const char *url)
{
	static const char *const hosts[] = {"localhost", "169.254.170.2", "169.254.170.23"};
	if (!strncmp(url, "https://", 8))
		return true;
	size_t n;
	if (strncmp(url, "http://", 7) || url_host(url + 7, &n) < 0)
		return false;
	const char *h = url + 7;
	if (ipv4_loopback(h, n) || ipv6_is(h, n, &in6addr_loopback) || ipv6_is(h, n, &eks_agent_v6))
		return true;
	for (size_t i = 0; i < sizeof(hosts) / sizeof(*hosts); i++)
		if (n == strlen(hosts[i]) && !strncasecmp(h, hosts[i], n))
			return true;
	return false;
}

/* The container endpoint: the full URI as given, or the relative one on ECS's address. */
static int container_url(struct strbuf *url, struct strbuf *why)
{
	const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	if (rel)
		return sb_printf(url, "http://169.254.170.2%s", rel);
	const char *auth = full ? strstr(full, "://") : NULL;
	if (auth && memchr(auth + 3, '@', strcspn(auth + 3, "/?#"))) { /* not echoed: a password */
		sb_puts(why, "AWS_CONTAINER_CREDENTIALS_FULL_URI: a user name or password in the URI "
			"(user@host) is not supported; the token is sent in a header");
		return -EACCES;
	}
	if (full && !container_host_ok(full)) {
		sb_printf(why, "AWS_CONTAINER_CREDENTIALS_FULL_URI %s: plain http only to loopback or the "
			  "ECS/EKS agent addresses (169.254.170.2, 169.254.170.23)", full);
		return -EACCES;
	}
	return full ? sb_puts(url, full) : -ENOENT;
}

/* Sources 3 to 6, in order; the first that applies sets a->kind and gets the keys. */
static int chain(struct awscred *a, struct awscred_keys *k, struct strbuf *why)
{
	const char *profile = env("AWS_PROFILE");
	enum source_kind kind;
	if (!(a->profile = strdup(profile ? profile : "default")))
		return -ENOMEM;
	struct strbuf pwhy = {0};
	int r = profile_keys(a, a->profile, 0, k, &kind, &pwhy);
	if (r != -ENOENT || profile) { /* AWS_PROFILE names a profile that must be there */
		if (r == 0) {
			struct profile p = {0};
			profile_read(a->profile, &p);
			r = kind == SRC_PROFILE_ROLE
				    ? set_source(a, kind, NULL, "role %s (profile %s, STS AssumeRole)",
						 a->role_arn, a->profile)
				    : kind == SRC_PROCESS
				    ? set_source(a, kind, NULL, "credential_process of profile %s", a->profile)
				    : set_source(a, kind, NULL, "profile %s (%s)", a->profile,
						 p.v[P_AK] ? p.files[0] : p.files[1]);
			profile_clear(&p);
		} else {
			sb_puts(why, pwhy.buf ? pwhy.buf : strerror(-r));
			r = r == -ENOMEM ? r : -EACCES;
		}
		sb_free(&pwhy);
		return r;
	}
	sb_free(&pwhy);
	const char *tf = env("AWS_WEB_IDENTITY_TOKEN_FILE"), *role = env("AWS_ROLE_ARN");
	if (tf && role) {
		char session[64];
		snprintf(session, sizeof(session), "cassbackup-%ld", (long)getpid());
		const char *sn = env("AWS_ROLE_SESSION_NAME") ?: session;
		if (!(a->role_arn = strdup(role)) || !(a->session_name = strdup(sn)))
			return -ENOMEM;
		return set_source(a, SRC_WEB_IDENTITY, tf, "web identity %s (role %s, STS "
				  "AssumeRoleWithWebIdentity)", tf, role) ?: web_identity(a, k, why);
	}
	struct strbuf url = {0};
	if ((r = container_url(&url, why)) != -ENOENT) {
		r = r ?: set_source(a, SRC_CONTAINER, url.buf, "container credentials %s", url.buf);
		sb_free(&url);
		return r ?: container(a, k, why);
	}
	const char *off = env("AWS_EC2_METADATA_DISABLED");
	if (off && !strcasecmp(off, "true")) {
		sb_puts(why, "none in the environment (AWS_ACCESS_KEY_ID), the shared files, web identity "
			"or container settings; instance metadata disabled (AWS_EC2_METADATA_DISABLED)");
		return -EINVAL; /* nothing to ask: a configuration to fix, not a refusal */
	}
	const char *ep = env("AWS_EC2_METADATA_SERVICE_ENDPOINT") ?: "http://169.254.169.254";
	r = set_source(a, SRC_IMDS, ep, "instance metadata %s", ep);
	struct strbuf iwhy = {0};
	r = r ?: imds(a, k, &iwhy);
	if (r == -EACCES || r == -EIO) {
		sb_printf(why, "none in the environment (AWS_ACCESS_KEY_ID), the shared files, web "
			  "identity or container settings, nor from %s", iwhy.buf ? iwhy.buf : ep);
		r = -EACCES;
	}
	sb_free(&iwhy);
	return r;
}

int awscred_new(const struct awscred_config *cfg, struct awscred **out)
{
	*out = NULL;
	int r = cb_curl_load();
	if (r < 0)
		return r;
	struct awscred *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	a->region = strdup(cfg->region && *cfg->region ? cfg->region : "us-east-1");
	a->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
	r = !a->region || (cfg->ca_file && !a->ca_file) ? -ENOMEM : 0;
	struct strbuf why = {0};
	const char *ak = env("AWS_ACCESS_KEY_ID"), *sk = env("AWS_SECRET_ACCESS_KEY");
	if (r) {
	} else if (cfg->access_key && cfg->secret_key) {
		r = set_source(a, SRC_EXPLICIT, NULL, "%s", cfg->explicit_source ? cfg->explicit_source
										  : "S3 options") ?:
		    keys_set(&a->keys, cfg->access_key, cfg->secret_key, cfg->session_token, 0);
	} else if (ak && sk) {
		r = set_source(a, SRC_ENV, NULL, "environment (AWS_ACCESS_KEY_ID)") ?:
		    keys_set(&a->keys, ak, sk, env("AWS_SESSION_TOKEN"), 0);
	} else if (ak || sk) { /* the environment applies but is half there: as botocore's
				* PartialCredentialsError, never a silent step to the next source */
		sb_printf(&why, "the environment sets %s but not %s", ak ? "AWS_ACCESS_KEY_ID" :
			  "AWS_SECRET_ACCESS_KEY", ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
		r = -EINVAL;
	} else {
		r = chain(a, &a->keys, &why);
	}
	if (r < 0) {
		if (r != -ENOMEM)
			cb_backend_set_error("no S3 credentials: %s", why.buf ? why.buf : strerror(-r));
		sb_free(&why);
		awscred_free(a);
		return r;
	}
	sb_free(&why);
	*out = a;
	return 0;
}

void awscred_free(struct awscred *a)
{
	if (!a)
		return;
	awscred_keys_clear(&a->keys);
	pthread_mutex_destroy(&a->mu);
	pthread_cond_destroy(&a->cv);
	free(a->source);
	free(a->region);
	free(a->ca_file);
	free(a->profile);
	free(a->arg);
	free(a->role_arn);
	free(a->session_name);
	free(a);
}

static bool usable(const struct awscred_keys *k, int64_t now)
{
	return k->access_key && (!k->expires_ns || now < k->expires_ns);
}

/* Refreshes a->keys (a->mu held; released while fetching, with a->refreshing set). */
static int refresh_locked(struct awscred *a)
{
	a->refreshing = true;
	pthread_mutex_unlock(&a->mu);
	struct awscred_keys k = {0};
	struct strbuf why = {0};
	int r = fetch(a, &k, &why);
	pthread_mutex_lock(&a->mu);
	a->refreshing = false;
	pthread_cond_broadcast(&a->cv);
	if (r == 0) {
		awscred_keys_clear(&a->keys);
		a->keys = k;
	} else {
		a->next_try_ns = wall_ns() + RETRY_NS;
		if (r != -ENOMEM)
			cb_backend_set_error("cannot renew S3 credentials from %s: %s", a->source,
					     why.buf ? why.buf : strerror(-r));
	}
	sb_free(&why);
	return r;
}

int awscred_get(struct awscred *a, struct awscred_keys *out)
{
	pthread_mutex_lock(&a->mu);
	int r = 0;
	for (;;) {
		int64_t now = wall_ns();
		bool due = a->keys.expires_ns && now >= a->keys.expires_ns - REFRESH_MARGIN_NS;
		if (!due || a->kind <= SRC_ENV)
			break;
		if (!a->refreshing && now >= a->next_try_ns) {
			r = refresh_locked(a);
			if (r == 0 || !usable(&a->keys, wall_ns()))
				break;
			r = 0; /* the old keys still do */
			break;
		}
		if (usable(&a->keys, now))
			break; /* another thread refreshes: these are still valid */
		if (!a->refreshing) {
			cb_backend_set_error("S3 credentials from %s expired and could not be renewed",
					     a->source);
			r = -EACCES;
			break;
		}
		pthread_cond_wait(&a->cv, &a->mu);
	}
	if (r == 0 && !usable(&a->keys, wall_ns()) && a->kind > SRC_ENV) {
		cb_backend_set_error("S3 credentials from %s expired and could not be renewed", a->source);
		r = -EACCES;
	}
	if (r == 0)
		r = keys_set(out, a->keys.access_key, a->keys.secret_key, a->keys.token,
			     a->keys.expires_ns);
	pthread_mutex_unlock(&a->mu);
	return r;
}

void awscred_expire(struct awscred *a)
{
	pthread_mutex_lock(&a->mu);
	if (a->kind > SRC_ENV && a->keys.expires_ns) {
		/* due for renewal now, and still what others sign with until it is renewed */
		int64_t e = wall_ns() + REFRESH_MARGIN_NS - 1;
		if (e < a->keys.expires_ns)
			a->keys.expires_ns = e;
		a->next_try_ns = 0;
	}
	pthread_mutex_unlock(&a->mu);
}

const char *awscred_source(const struct awscred *a)
{
	return a->source;
}
