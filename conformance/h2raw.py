# SPDX-License-Identifier: Apache-2.0
"""Just enough HTTP/2 by hand to send what no well-behaved gRPC library would:
partial frames, half prefaces, calls abandoned midway (RFC 9113, RFC 7541)."""
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = 0, 1, 2, 3, 4, 5, 6, 7
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM, END_HEADERS, ACK, PADDED, PRIORITY_FLAG = 0x1, 0x4, 0x1, 0x8, 0x20

# SETTINGS identifiers (RFC 9113 6.5.2).
SETTINGS_HEADER_TABLE_SIZE, SETTINGS_ENABLE_PUSH, SETTINGS_MAX_CONCURRENT_STREAMS = 1, 2, 3
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE, SETTINGS_MAX_HEADER_LIST_SIZE = 4, 5, 6


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, stream) + payload


def read_frame(sock):
    """Read one frame; returns (type, flags, stream, payload) or None at EOF."""
    head = recv_exact(sock, 9)
    if head is None:
        return None
    length = int.from_bytes(head[:3], "big")
    ftype, flags, stream = struct.unpack(">BBI", head[3:])
    payload = recv_exact(sock, length)
    if payload is None:
        return None
    return ftype, flags, stream & 0x7FFFFFFF, payload


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def settings(*pairs):
    """A SETTINGS payload from (identifier, value) pairs."""
    return b"".join(struct.pack(">HI", k, v) for k, v in pairs)


def hpack_int(value, prefix_bits, first=0):
    """An HPACK integer with an N-bit prefix (RFC 7541 5.1); first holds the bits above it."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_string(s):
    """A string literal without Huffman coding, of any length (str or bytes)."""
    if isinstance(s, str):
        s = s.encode()
    return hpack_int(len(s), 7) + s


def hpack_literal(name, value):
    """A 'literal header field without indexing, new name' (no Huffman), RFC 7541 6.2.2."""
    return b"\x00" + hpack_string(name) + hpack_string(value)


def grpc_headers(path, extra=(), authority="localhost"):
    """The header block of a gRPC request; extra: more (name, value) pairs."""
    return header_block([
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", authority),
        ("content-type", "application/grpc"), ("te", "trailers"),
    ] + list(extra))


def header_block(fields):
    """A header block of exactly these (name, value) pairs, in this order, unchecked."""
    return b"".join(hpack_literal(k, v) for k, v in fields)


def grpc_message(msg):
    """A length-prefixed gRPC message (uncompressed) around serialized bytes."""
    return b"\x00" + struct.pack(">I", len(msg)) + msg


class Conn:
    """One raw HTTP/2 client connection that can also read replies.

    Responses are HPACK-decoded (python3-hpack), so a test can see the grpc-status a
    hand-made request got. Nothing is sent but what the test asks for, apart from
    SETTINGS acknowledgements while reading."""

    def __init__(self, sock):
        import hpack  # python3-hpack, a test dependency (scripts/lib.sh)
        self.sock = sock
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = 65536
        self.headers = {}   # stream -> list of header dicts, in arrival order
        self.data = {}      # stream -> bytes
        self.ended = set()  # streams the server ended (END_STREAM)
        self.resets = {}    # stream -> RST_STREAM error code
        self.goaway = None  # (last stream id, error code) once a GOAWAY came
        self._block = None  # (stream, flags, fragments) of a header block in progress

    def send(self, data):
        self.sock.sendall(data)

    def start(self, extra_settings=b""):
        self.send(PREFACE + frame(SETTINGS, 0, 0, extra_settings))

    def read_one(self):
        """Read and record one frame; returns it, or None at EOF."""
        f = read_frame(self.sock)
        if f is None:
            return None
        ftype, flags, stream, payload = f
        if ftype == SETTINGS and not flags & ACK:
            try:
                self.send(frame(SETTINGS, ACK, 0))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server has closed; what it sent before is still readable
        elif ftype in (HEADERS, CONTINUATION):
            if ftype == HEADERS:
                body = payload
                if flags & PADDED:
                    body = body[1:len(body) - body[0]]
                if flags & PRIORITY_FLAG:
                    body = body[5:]
                self._block = (stream, flags, [body])
            else:
                self._block[2].append(payload)
            if flags & END_HEADERS:
                s, hflags, parts = self._block
                self._block = None
                fields = self.decoder.decode(b"".join(parts), raw=True)
                self.headers.setdefault(s, []).append(
                    {k.decode("latin-1"): v.decode("latin-1") for k, v in fields})
                if hflags & END_STREAM:
                    self.ended.add(s)
        elif ftype == DATA:
            self.data[stream] = self.data.get(stream, b"") + payload
            if flags & END_STREAM:
                self.ended.add(stream)
        elif ftype == RST_STREAM:
            self.resets[stream] = struct.unpack(">I", payload[:4])[0]
        elif ftype == GOAWAY:
            self.goaway = struct.unpack(">II", payload[:8])
        return f

    def wait_stream(self, stream):
        """Read until the server ended or reset stream; False when the connection ended first."""
        while stream not in self.ended and stream not in self.resets:
            if self.read_one() is None:
                return False
        return True

    def grpc_status(self, stream):
        """(grpc-status as int or None, grpc-message) from the last header block of stream."""
        blocks = self.headers.get(stream) or [{}]
        last = blocks[-1]
        status = last.get("grpc-status")
        return (int(status) if status is not None else None), last.get("grpc-message", "")

    def grpc_messages(self, stream):
        """The length-prefixed messages in the DATA of stream."""
        buf, out = self.data.get(stream, b""), []
        while len(buf) >= 5:
            n = struct.unpack(">I", buf[1:5])[0]
            out.append(buf[5:5 + n])
            buf = buf[5 + n:]
        return out
