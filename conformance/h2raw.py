# SPDX-License-Identifier: Apache-2.0
"""Just enough HTTP/2 by hand to send what no well-behaved gRPC library would:
partial frames, half prefaces, calls abandoned midway (RFC 9113, RFC 7541)."""
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags.
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


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


def hpack_literal(name, value):
    """A 'literal header field without indexing, new name' (no Huffman), RFC 7541 6.2.2."""
    def string(s):
        s = s.encode()
        assert len(s) < 127
        return bytes([len(s)]) + s
    return b"\x00" + string(name) + string(value)


def grpc_headers(path):
    return b"".join(hpack_literal(k, v) for k, v in [
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
        ("content-type", "application/grpc"), ("te", "trailers"),
    ])


def grpc_message(msg):
    """A length-prefixed gRPC message (uncompressed) around serialized bytes."""
    return b"\x00" + struct.pack(">I", len(msg)) + msg
