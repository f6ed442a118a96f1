"""A fault-injecting HTTP/1.1 proxy between cassbackup and an S3 server on loopback (stdlib only).

    with S3Proxy(upstream_port, fault='slowdown', every=2, match='PUT /cbtest/') as px:
        env['AWS_ENDPOINT_URL'] = f'http://127.0.0.1:{px.port}'
        ...
        px.set_fault('reset', every=1, match='GET ')   # change at runtime; counting restarts
        px.requests, px.bytes_to_client, px.log        # [(method, path, status, body_bytes)]
        px.connections                                 # client connections accepted
        px.received                                    # [(method, target, {header: value})]

Request bytes go upstream unchanged (SigV4 signs the Host header and more). Each client
connection gets its own upstream connection, reopened when the server closes it; answers go
back with a Content-Length (a chunked upstream answer is de-chunked), so the client's
connection stays alive across requests as it would with a real S3 endpoint.

Faults, applied to the 1st, (every+1)th, (2*every+1)th... request whose 'METHOD target'
contains `match` (target as sent: path and query), so with every >= 2 each retry succeeds:
  slowdown  answer 503 with an S3 <Error><Code>SlowDown</Code> document; nothing is forwarded
  reset     forward, send the headers and half the body, then close with RST (SO_LINGER 0)
  truncate  forward, send the headers (full Content-Length) and half the body, then close (FIN)
  stall     sleep STALL_SECONDS (0.5 s: far longer than a loopback answer takes), then
            forward and answer normally
  bad_range forward; a 206 answer gets a Content-Range one byte further on than the server's
            (only 206 answers count as matching for this fault)
  notfound  answer 404 with an S3 <Error><Code>NoSuchKey</Code> document; nothing is forwarded
  forbidden answer 403 with an S3 <Error><Code>AccessDenied</Code> document; nothing forwarded
  empty     forward, then answer 200 with an empty body (what a broken cache or gateway gives)
  expired   answer 400 with an S3 <Error><Code>ExpiredToken</Code> document; nothing forwarded
            (not in FAULTS, which the fault tests run through: only a client whose credentials
            can be renewed gets past it)
  hold      wait until px.release() (px.holding is set once one waits), then forward: a
            client paused at an exact request (not in FAULTS either)
  dribble   forward, send the headers, then the body DRIBBLE_BYTES every DRIBBLE_PAUSE
            seconds (160 bytes a second: above curl's floor of 1, hours for a pack's frames)
            until it is sent or the client goes (not in FAULTS either)
  dribble_inflated  the same under a Content-Length of a terabyte, as a server that lies
  keepalive forward, then send the headers and KEEPALIVE_SPACES spaces, one each
            KEEPALIVE_PAUSE seconds, before the body: as S3 answers a CompleteMultipartUpload
            that takes it a while
An answer without a body (HEAD, 204) under reset/truncate is cut inside its header block.

Run alone: python3 tests/s3proxy.py UPSTREAM_PORT [FAULT [EVERY [MATCH]]] prints its port.
"""
import http
import re
import socket
import socketserver
import struct
import sys
import threading
import time

FAULTS = (None, 'slowdown', 'reset', 'truncate', 'stall', 'bad_range', 'notfound', 'forbidden',
          'empty')
OTHER_FAULTS = ('expired', 'hold', 'dribble', 'dribble_inflated', 'keepalive')
ERRORS = {'slowdown': (503, 'SlowDown', 'Please reduce your request rate.'),
          'expired': (400, 'ExpiredToken', 'The provided token has expired.'),
          'notfound': (404, 'NoSuchKey', 'The specified key does not exist.'),
          'forbidden': (403, 'AccessDenied', 'Access Denied')}
STALL_SECONDS = 0.5
DRIBBLE_BYTES, DRIBBLE_PAUSE = 16, 0.1
KEEPALIVE_SPACES, KEEPALIVE_PAUSE = 10, 0.3

def _error_body(code, message):
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            b'<RequestId>s3proxy</RequestId></Error>' % (code.encode(), message.encode()))

HOP_HEADERS = {b'connection', b'keep-alive', b'transfer-encoding', b'proxy-connection'}


class _Closed(Exception):
    """The peer closed the connection between requests."""


def _read_head(rfile):
    """Reads a request or response head. Returns (raw bytes, first line, [(name, value)])."""
    raw = rfile.readline(65537)
    if not raw:
        raise _Closed()
    first = raw.rstrip(b'\r\n')
    headers = []
    while True:
        line = rfile.readline(65537)
        if not line:
            raise ConnectionError('connection closed inside a header block')
        raw += line
        if line in (b'\r\n', b'\n'):
            return raw, first, headers
        name, _, value = line.partition(b':')
        headers.append((name.strip().lower(), value.strip()))


def _header(headers, name):
    for n, v in headers:
        if n == name:
            return v
    return None


def _read_exact(rfile, n):
    data = rfile.read(n)
    if len(data) != n:
        raise ConnectionError(f'short body: {len(data)} of {n} bytes')
    return data


def _read_chunked(rfile, keep_raw):
    """A chunked body: (raw bytes when keep_raw else b'', decoded payload)."""
    raw, payload = [], []
    while True:
        line = rfile.readline(65537)
        raw.append(line)
        size = int(line.split(b';')[0].strip() or b'0', 16)
        if size == 0:
            while True:  # trailers up to the empty line
                t = rfile.readline(65537)
                raw.append(t)
                if t in (b'\r\n', b'\n', b''):
                    break
            break
        data = _read_exact(rfile, size)
        raw.append(data)
        payload.append(data)
        raw.append(rfile.readline(65537))
    return (b''.join(raw) if keep_raw else b''), b''.join(payload)


def _read_request(rfile):
    """(raw request bytes, method, target, headers)."""
    head, first, headers = _read_head(rfile)
    method, target = (first.split(b' ') + [b'', b''])[:2]
    if (_header(headers, b'transfer-encoding') or b'').lower() == b'chunked':
        body, _ = _read_chunked(rfile, keep_raw=True)
    else:
        body = _read_exact(rfile, int(_header(headers, b'content-length') or 0))
    return head + body, method.decode('latin-1'), target.decode('latin-1'), headers


def _read_response(rfile, method):
    """(status, [(name, value)] without hop-by-hop headers, body, upstream keeps the connection)."""
    while True:
        _, first, headers = _read_head(rfile)
        parts = first.split(b' ', 2)
        version, status = parts[0], int(parts[1])
        if status >= 200 or status == 101:
            break  # 1xx interim answers are consumed here
    conn = (_header(headers, b'connection') or b'').lower()
    keep = conn != b'close' and (version == b'HTTP/1.1' or conn == b'keep-alive')
    te = (_header(headers, b'transfer-encoding') or b'').lower()
    length = _header(headers, b'content-length')
    if method == 'HEAD' or status in (204, 304):
        body = b''
    elif te == b'chunked':
        _, body = _read_chunked(rfile, keep_raw=False)
    elif length is not None:
        body = _read_exact(rfile, int(length))
    else:
        body, keep = rfile.read(), False  # delimited by the close
    kept = [(n, v) for n, v in headers if n not in HOP_HEADERS]
    if method != 'HEAD' and status not in (204, 304):
        kept = [(n, v) for n, v in kept if n != b'content-length']
        kept.append((b'content-length', str(len(body)).encode()))
    return status, kept, body, keep


def _encode_response(status, headers):
    try:
        reason = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        reason = b'Unknown'
    lines = [b'HTTP/1.1 %d %s' % (status, reason)]
    lines += [n + b': ' + v for n, v in headers]
    return b'\r\n'.join(lines) + b'\r\n\r\n'


def _shift_range(headers):
    """Content-Range 'bytes a-b/t' moved one byte on: the right length at the wrong place."""
    out = []
    for n, v in headers:
        m = re.fullmatch(rb'bytes (\d+)-(\d+)/(\S+)', v) if n == b'content-range' else None
        if m:
            v = b'bytes %d-%d/%s' % (int(m[1]) + 1, int(m[2]) + 1, m[3])
        out.append((n, v))
    return out


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        px = self.server.proxy
        px._track(self.request, True)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = self.request.makefile('rb')
        up = [None]  # (socket, reader) of this client's upstream connection
        try:
            while True:
                try:
                    raw, method, target, headers = _read_request(rfile)
                except (_Closed, ConnectionError, OSError, ValueError):
                    return
                if not self._serve_one(px, raw, method, target, headers, up):
                    return
                if (_header(headers, b'connection') or b'').lower() == b'close':
                    return
        finally:
            if up[0]:
                up[0][0].close()
            rfile.close()
            px._track(self.request, False)

    def _forward(self, px, raw, method, up):
        """Sends raw upstream, reopening the connection once when the server had closed it."""
        for attempt in (0, 1):
            if up[0] is None:
                s = socket.create_connection(('127.0.0.1', px.upstream_port))
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                up[0] = (s, s.makefile('rb'))
            try:
                up[0][0].sendall(raw)
                result = _read_response(up[0][1], method)
            except (_Closed, ConnectionError, OSError):
                up[0][0].close()
                up[0] = None
                if attempt:
                    raise
                continue
            if not result[3]:
                up[0][0].close()
                up[0] = None
            return result[:3]

    def _serve_one(self, px, raw, method, target, headers, up):
        """Answers one request. False: the client connection is to be closed."""
        px._received(method, target, headers)
        fault = px._decide(method, target, after_response=False)
        if fault in ERRORS:
            status, code, message = ERRORS[fault]
            body = _error_body(code, message) if method != 'HEAD' else b''
            hdr = [(b'content-type', b'application/xml'), (b'content-length', str(len(body)).encode())]
            self.request.sendall(_encode_response(status, hdr) + body)
            px._record(method, target, status, len(body), forwarded=False)
            return True
        if fault == 'stall':
            time.sleep(STALL_SECONDS)
        if fault == 'hold':
            px.holding.set()
            px._released.wait()
        try:
            status, rheaders, body = self._forward(px, raw, method, up)
        except (_Closed, ConnectionError, OSError):
            return False  # the server is gone: so is the client's connection
        if fault is None and status == 206:
            fault = px._decide(method, target, after_response=True)
            if fault == 'bad_range':
                rheaders = _shift_range(rheaders)
        if fault == 'empty' and status == 200:
            rheaders = [(n, v) for n, v in rheaders if n != b'content-length']
            rheaders.append((b'content-length', b'0'))
            body = b''
        if fault == 'keepalive':
            rheaders = [(n, v) for n, v in rheaders if n != b'content-length']
            rheaders.append((b'content-length', str(KEEPALIVE_SPACES + len(body)).encode()))
            try:
                self.request.sendall(_encode_response(status, rheaders))
                for _ in range(KEEPALIVE_SPACES):
                    self.request.sendall(b' ')
                    time.sleep(KEEPALIVE_PAUSE)
                self.request.sendall(body)
            except OSError:
                return False
            px._record(method, target, status, len(body), forwarded=True)
            return True
        if fault == 'dribble_inflated':
            rheaders = [(n, v) for n, v in rheaders if n != b'content-length']
            rheaders.append((b'content-length', str(10**12).encode()))
        head = _encode_response(status, rheaders)
        if fault in ('reset', 'truncate'):
            return self._cut(px, method, target, status, head, body, fault)
        if fault in ('dribble', 'dribble_inflated'):
            return self._dribble(px, method, target, status, head, body)
        self.request.sendall(head + body)
        px._record(method, target, status, len(body), forwarded=True)
        return True

    def _dribble(self, px, method, target, status, head, body):
        sent = 0
        try:
            self.request.sendall(head)
            while sent < len(body):
                self.request.sendall(body[sent:sent + DRIBBLE_BYTES])
                sent += DRIBBLE_BYTES
                time.sleep(DRIBBLE_PAUSE)
        except OSError:
            px._record(method, target, status, min(sent, len(body)), forwarded=True)
            return False
        px._record(method, target, status, len(body), forwarded=True)
        return True

    def _cut(self, px, method, target, status, head, body, fault):
        sent = head[:len(head) // 2] if not body else head + body[:len(body) // 2]
        try:
            self.request.sendall(sent)
        except OSError:
            pass
        px._record(method, target, status, max(0, len(sent) - len(head)), forwarded=True)
        if fault == 'reset':
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        else:
            try:
                self.request.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self.request.close()
        return False


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class S3Proxy:
    def __init__(self, upstream_port: int, fault: str | None = None, every: int = 1,
                 match: str = ''):
        self.upstream_port = upstream_port
        self.port = None
        self.requests = 0
        self.bytes_to_client = 0
        self.log = []
        self.received = []  # every request as it came: (method, target, {lower-case header: value})
        self.connections = 0  # client connections accepted (keep-alive keeps this low)
        self.parts_now = 0    # multipart part uploads (PUT ...partNumber=) in flight
        self.parts_most = 0   # the most in flight at once
        self._mu = threading.Lock()
        self.holding = threading.Event()    # a request waits under the 'hold' fault
        self._released = threading.Event()
        self._conns = set()
        self._server = None
        self._thread = None
        self.set_fault(fault, every, match)

    def set_fault(self, fault, every=1, match=''):
        """Changes the fault (None: none); counting of matching requests starts again."""
        if fault not in FAULTS + OTHER_FAULTS:
            raise ValueError(f'unknown fault {fault!r}: one of {FAULTS + OTHER_FAULTS}')
        if every < 1:
            raise ValueError('every must be >= 1')
        with self._mu:
            self.fault, self.every, self.match, self._seen = fault, every, match, 0

    def release(self):
        """Lets the requests held by the 'hold' fault (and any later ones) through."""
        self._released.set()

    def _decide(self, method, target, after_response):
        """The fault to apply to this request, or None. bad_range is decided on 206 answers
        (after_response); every other fault before forwarding."""
        with self._mu:
            if self.fault is None or (self.fault == 'bad_range') != after_response:
                return None
            if self.match not in f'{method} {target}':
                return None
            n, self._seen = self._seen, self._seen + 1
            return self.fault if n % self.every == 0 else None

    def _record(self, method, target, status, nbytes, forwarded):
        with self._mu:
            if method == 'PUT' and 'partNumber=' in target:
                self.parts_now -= 1
            self.requests += forwarded
            self.bytes_to_client += nbytes
            self.log.append((method, target, status, nbytes))

    def _received(self, method, target, headers):
        with self._mu:
            if method == 'PUT' and 'partNumber=' in target:
                self.parts_now += 1
                self.parts_most = max(self.parts_most, self.parts_now)
            self.received.append((method, target, {n.decode('latin-1'): v.decode('latin-1')
                                                   for n, v in headers}))

    def _track(self, sock, add):
        with self._mu:
            self.connections += add
            (self._conns.add if add else self._conns.discard)(sock)

    def __enter__(self):
        self._server = _Server(('127.0.0.1', 0), _Handler)
        self._server.proxy = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        with self._mu:
            conns = list(self._conns)
        for s in conns:  # wakes handler threads blocked on an idle keep-alive connection
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join()
        return False


if __name__ == '__main__':
    args = sys.argv[1:]
    if not args:
        sys.exit('usage: s3proxy.py UPSTREAM_PORT [FAULT [EVERY [MATCH]]]')
    with S3Proxy(int(args[0]), args[1] if len(args) > 1 and args[1] != 'none' else None,
                 int(args[2]) if len(args) > 2 else 1, args[3] if len(args) > 3 else '') as px:
        print(px.port, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
