"""Signed requests from the tests to the S3/IAM/STS servers they start (moto checks SigV4 once
test_s3.moto has turned authentication on), with hashlib/hmac only: the Debian python3 that
runs the tests has no botocore. AWS Signature Version 4 as documented in
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html"""
import datetime
import hashlib
import hmac
import urllib.parse
import urllib.request


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _canonical_query(query):
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return '&'.join(f'{urllib.parse.quote(k, safe="-_.~")}={urllib.parse.quote(v, safe="-_.~")}'
                    for k, v in sorted(pairs))


def request(method, url, key, secret, service='s3', region='us-east-1', body=b'', headers=None,
            token=None):
    """urllib's answer to a SigV4-signed request (urllib.error.HTTPError for 4xx/5xx)."""
    u = urllib.parse.urlsplit(url)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime('%Y%m%dT%H%M%SZ'), now.strftime('%Y%m%d')
    payload = hashlib.sha256(body).hexdigest()
    hdrs = {'host': u.netloc, 'x-amz-date': amz_date, 'x-amz-content-sha256': payload}
    if token:
        hdrs['x-amz-security-token'] = token
    for k, v in (headers or {}).items():
        hdrs[k.lower()] = v
    signed = ';'.join(sorted(hdrs))
    canonical = '\n'.join([method, urllib.parse.quote(u.path or '/', safe='/-_.~'),
                           _canonical_query(u.query),
                           ''.join(f'{k}:{hdrs[k].strip()}\n' for k in sorted(hdrs)), signed, payload])
    scope = f'{day}/{region}/{service}/aws4_request'
    to_sign = '\n'.join(['AWS4-HMAC-SHA256', amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    k = _hmac(_hmac(_hmac(_hmac(('AWS4' + secret).encode(), day), region), service), 'aws4_request')
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    hdrs['authorization'] = (f'AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, '
                             f'Signature={sig}')
    del hdrs['host']
    req = urllib.request.Request(url, data=body if body else None, method=method, headers=hdrs)
    return urllib.request.urlopen(req)


def env_request(env, method, path, body=b'', headers=None):
    """A signed request to the S3 server of a test's environment (AWS_ENDPOINT_URL and keys)."""
    return request(method, env['AWS_ENDPOINT_URL'] + path, env['AWS_ACCESS_KEY_ID'],
                   env['AWS_SECRET_ACCESS_KEY'], body=body, headers=headers,
                   token=env.get('AWS_SESSION_TOKEN'))


def env_get(env, path):
    return env_request(env, 'GET', path).read().decode()


def query(endpoint, service, params, key='bootstrap', secret='bootstrap', token=None):
    """An AWS query-protocol call (IAM, STS): the answer's XML text."""
    body = urllib.parse.urlencode(params).encode()
    return request('POST', endpoint + '/', key, secret, service=service, body=body, token=token,
                   headers={'content-type': 'application/x-www-form-urlencoded'}).read().decode()
