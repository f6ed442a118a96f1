"""A credentials server on loopback for the tests: the EC2 instance metadata service (IMDSv2
only, as AWS answers it with HttpTokens=required) and the ECS/EKS container credentials
endpoint, handing out keys of a moto IAM user.

Each time credentials are asked for, a new access key of the user is made (IAM
CreateAccessKey on moto) with an Expiration `lifetime` seconds away, and the key made two
issues before is deleted (IAM allows a user two keys), so a client that goes on signing with
keys older than the last two is refused (InvalidAccessKeyId). What IMDS enforces:
  PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds (1..21600) gives a token;
  GET /latest/meta-data/iam/security-credentials/[ROLE] needs X-aws-ec2-metadata-token set to
  one (401 otherwise, as IMDSv2 answers);
the container endpoint answers GET `container_path` only with Authorization equal to
`container_token` (403 otherwise).
"""
import datetime
import http.server
import json
import re
import secrets
import threading

import awssig

ROLE = 'cassbackup-node'


class CredServer:
    def __init__(self, iam_url, admin_key, admin_secret, user, lifetime=3600,
                 container_path='/v2/credentials/cb', container_token='tok-' + secrets.token_hex(8)):
        self.iam_url, self.admin = iam_url, (admin_key, admin_secret)
        self.user, self.lifetime = user, lifetime
        self.container_path, self.container_token = container_path, container_token
        self.tokens = set()
        self.issued = []   # access key ids, in order
        self.refused = []  # (path, why) of requests refused
        self.lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), self._handler())
        self.port = self.httpd.server_address[1]
        self.url = f'http://127.0.0.1:{self.port}'
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _iam(self, **params):
        return awssig.query(self.iam_url, 'iam', dict(params, Version='2010-05-08'), *self.admin)

    def issue(self):
        """A new key of the user as the JSON both endpoints answer, the key two issues back gone."""
        with self.lock:
            if len(self.issued) >= 2:
                self._iam(Action='DeleteAccessKey', UserName=self.user, AccessKeyId=self.issued[-2])
            xml = self._iam(Action='CreateAccessKey', UserName=self.user)
            key = re.search(r'<AccessKeyId>([^<]+)<', xml).group(1)
            secret = re.search(r'<SecretAccessKey>([^<]+)<', xml).group(1)
            self.issued.append(key)
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=self.lifetime)
        return json.dumps({'Code': 'Success', 'Type': 'AWS-HMAC', 'AccessKeyId': key,
                           'SecretAccessKey': secret, 'Token': '',
                           'Expiration': expires.strftime('%Y-%m-%dT%H:%M:%SZ'),
                           'LastUpdated': datetime.datetime.now(datetime.timezone.utc).strftime(
                               '%Y-%m-%dT%H:%M:%SZ')})

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, body, ctype='text/plain'):
                data = body.encode()
                self.send_response(status)
                self.send_header('Content-Type', ctype)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _refuse(self, status, why):
                server.refused.append((self.path, why))
                self._answer(status, why)

            def do_PUT(self):
                ttl = self.headers.get('X-aws-ec2-metadata-token-ttl-seconds', '')
                if self.path != '/latest/api/token':
                    return self._refuse(404, 'not found')
                if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    return self._refuse(400, 'missing or bad X-aws-ec2-metadata-token-ttl-seconds')
                token = secrets.token_urlsafe(24)
                server.tokens.add(token)
                self._answer(200, token)

            def do_GET(self):
                base = '/latest/meta-data/iam/security-credentials/'
                if self.path == server.container_path:
                    if self.headers.get('Authorization') != server.container_token:
                        return self._refuse(403, 'bad Authorization')
                    return self._answer(200, server.issue(), 'application/json')
                if not self.path.startswith(base):
                    return self._refuse(404, 'not found')
                if self.headers.get('X-aws-ec2-metadata-token') not in server.tokens:
                    return self._refuse(401, 'IMDSv2 token required')
                if self.path == base:
                    return self._answer(200, ROLE)
                if self.path != base + ROLE:
                    return self._refuse(404, 'no such role')
                self._answer(200, server.issue(), 'application/json')

        return Handler
