# SPDX-License-Identifier: Apache-2.0
"""A small raw SPDY/3.1 client for the streaming tests: the HTTP upgrade, frames
(SYN_STREAM, DATA, RST_STREAM, PING, GOAWAY) and header blocks compressed with zlib
and the SPDY/3 dictionary, as client-go's spdystream sends them. It does exactly
what it is told, so tests can also misbehave on purpose (never read, drop the
connection, send odd frames)."""
import socket
import struct
import time
import urllib.parse
import zlib

# The SPDY/3 header dictionary: length-prefixed words, then a tail of common values.
_WORDS = [
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
    "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
    "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
]
_TAIL = (b"100101201202205206300302303304305306307402405406407408409410411412413414415416417"
         b"502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad"
         b" Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not "
         b"Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec "
         b"00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,"
         b"image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
         b"publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL
assert len(DICTIONARY) == 1423 and zlib.adler32(DICTIONARY) == 0xE3C6A7C2

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = \
    1, 2, 3, 4, 6, 7, 8, 9
FIN = 1
EXEC_PROTOCOLS = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                  "channel.k8s.io"]


class Frame:
    def __init__(self, control, type_=0, flags=0, stream=0, data=b"", headers=None):
        self.control, self.type, self.flags, self.stream = control, type_, flags, stream
        self.data, self.headers = data, headers

    def __repr__(self):
        if self.control:
            return "<control type=%d flags=%d stream=%d headers=%r data=%r>" % (
                self.type, self.flags, self.stream, self.headers, self.data[:16])
        return "<data stream=%d flags=%d len=%d>" % (self.stream, self.flags, len(self.data))


class Refused(Exception):
    def __init__(self, status, headers, body):
        super().__init__("HTTP %d: %s" % (status, body))
        self.status, self.headers, self.body = status, headers, body


def http_request(url, headers, method="POST", timeout=10):
    """Send an upgrade request; return (socket, status, header list, leftover bytes)."""
    u = urllib.parse.urlsplit(url)
    s = socket.create_connection((u.hostname, u.port), timeout=timeout)
    if u.scheme == "https":
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the tests' self-signed certificate
        s = ctx.wrap_socket(s)
    lines = ["%s %s HTTP/1.1" % (method, u.path + ("?" + u.query if u.query else "")),
             "Host: %s:%d" % (u.hostname, u.port)]
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head: %r" % buf)
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    first, *hlines = head.decode().split("\r\n")
    status = int(first.split()[1])
    hdrs = [tuple(x.strip() for x in line.split(":", 1)) for line in hlines]
    return s, status, hdrs, rest


class Client:
    """One SPDY connection. Use connect() to upgrade; frames are read with next_frame()."""

    def __init__(self, sock, leftover=b"", protocol=None):
        self.sock = sock
        self.buf = leftover
        self.protocol = protocol
        self.comp = zlib.compressobj(zdict=DICTIONARY)
        self.decomp = zlib.decompressobj(zdict=DICTIONARY)
        self.next_id = 1
        self.streams = {}  # id -> bytearray of data received
        self.fin = set()
        self.reset = {}
        self.replied = set()
        self.pings = []
        self.goaway = None

    @classmethod
    def connect(cls, url, protocols=EXEC_PROTOCOLS, method="POST", extra=(), timeout=10):
        headers = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]
        headers += [("X-Stream-Protocol-Version", p) for p in protocols]
        headers += list(extra)
        s, status, hdrs, rest = http_request(url, headers, method, timeout)
        if status != 101:
            body = rest
            s.settimeout(2)
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    body += chunk
            except OSError:
                pass
            s.close()
            raise Refused(status, hdrs, body.decode(errors="replace"))
        proto = dict((k.lower(), v) for k, v in hdrs).get("x-stream-protocol-version")
        return cls(s, rest, proto)

    # -- writing ------------------------------------------------------------

    def header_block(self, headers):
        raw = struct.pack(">I", len(headers))
        for k, v in headers.items():
            raw += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
        return self.comp.compress(raw) + self.comp.flush(zlib.Z_SYNC_FLUSH)

    def control(self, type_, flags, payload):
        return struct.pack(">HHI", 0x8003, type_, (flags << 24) | len(payload)) + payload

    def syn_stream(self, headers, fin=False, stream_id=None):
        sid = stream_id if stream_id is not None else self.next_id
        self.next_id = max(self.next_id, sid + 2)
        payload = struct.pack(">IIH", sid, 0, 0) + self.header_block(headers)
        self.sock.sendall(self.control(SYN_STREAM, FIN if fin else 0, payload))
        self.streams.setdefault(sid, bytearray())
        return sid

    def data(self, sid, data, fin=False):
        self.sock.sendall(struct.pack(">II", sid & 0x7FFFFFFF,
                                      ((FIN if fin else 0) << 24) | len(data)) + data)

    def rst(self, sid, status=5):
        self.sock.sendall(self.control(RST_STREAM, 0, struct.pack(">II", sid, status)))

    def ping(self, pid):
        self.sock.sendall(self.control(PING, 0, struct.pack(">I", pid)))

    # -- reading ------------------------------------------------------------

    def _need(self, n, deadline):
        while len(self.buf) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def next_frame(self, timeout=10):
        deadline = time.monotonic() + timeout
        self._need(8, deadline)
        w0, w1 = struct.unpack(">II", self.buf[:8])
        length = w1 & 0xFFFFFF
        flags = w1 >> 24
        self._need(8 + length, deadline)
        payload = self.buf[8:8 + length]
        self.buf = self.buf[8 + length:]
        if w0 & 0x80000000:
            type_ = w0 & 0xFFFF
            f = Frame(True, type_, flags, data=payload)
            if type_ in (SYN_REPLY, HEADERS):
                f.stream = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                f.headers = self.parse_block(payload[4:])
                self.replied.add(f.stream)
            elif type_ == RST_STREAM:
                f.stream, status = struct.unpack(">II", payload)
                self.reset[f.stream] = status
            elif type_ == PING:
                self.pings.append(struct.unpack(">I", payload)[0])
            elif type_ == GOAWAY:
                self.goaway = struct.unpack(">II", payload)
            return f
        sid = w0 & 0x7FFFFFFF
        self.streams.setdefault(sid, bytearray()).extend(payload)
        if flags & FIN:
            self.fin.add(sid)
        return Frame(False, flags=flags, stream=sid, data=payload)

    def parse_block(self, block):
        raw = self.decomp.decompress(block)
        (n,), off, out = struct.unpack(">I", raw[:4]), 4, {}
        for _ in range(n):
            (ln,) = struct.unpack(">I", raw[off:off + 4])
            name = raw[off + 4:off + 4 + ln].decode()
            off += 4 + ln
            (lv,) = struct.unpack(">I", raw[off:off + 4])
            out[name] = raw[off + 4:off + 4 + lv].decode()
            off += 4 + lv
        return out

    def until(self, predicate, timeout=20):
        """Read frames until predicate(self) is true; return the frames read."""
        deadline = time.monotonic() + timeout
        frames = []
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("condition not met; frames: %r" % frames[-10:])
            frames.append(self.next_frame(left))
        return frames

    def open(self, headers, timeout=10):
        """Open a stream and wait for its SYN_REPLY (or RST), as client-go does."""
        sid = self.syn_stream(headers)
        self.until(lambda c: sid in c.replied or sid in c.reset, timeout)
        return sid

    def read_to_eof(self, timeout=20):
        """Read until the server closes the connection; return the frames."""
        frames = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                frames.append(self.next_frame(deadline - time.monotonic()))
        except EOFError:
            return frames
        raise TimeoutError("the server did not close the connection")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def exec_session(url, stdin=False, stdout=True, stderr=True, tty=False, resize=False,
                 protocols=EXEC_PROTOCOLS):
    """Open the streams of an exec/attach as client-go does; return (client, ids by name)."""
    c = Client.connect(url, protocols)
    ids = {"error": c.open({"streamtype": "error"})}
    for name, want in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr and not tty),
                       ("resize", resize and tty)):
        if want:
            ids[name] = c.open({"streamtype": name})
    return c, ids
