# SPDX-License-Identifier: Apache-2.0
"""Robustness of the client-facing surface: whatever a client sends, every call ends
with a gRPC status within its deadline, the daemon stays up and keeps serving, no
sanitizer fires, and its memory stays bounded, back near where it was once the
client is gone.

Everything here is deterministic: inputs come from random.Random with fixed seeds,
and each test bounds its own work, so the file runs in under half a minute even
against the ASan+UBSan build.

Three parts:
  1. every method of RuntimeService and ImageService, with an empty message, random
     bytes, and structurally valid messages whose field values are random (a small
     generator that walks the message descriptors and writes the wire format itself,
     so it can also put invalid UTF-8 into strings and out-of-range enum numbers);
     and requests made of millions of tiny fields;
  2. HTTP/2 abuse over a raw socket: random frames, huge header blocks, bad stream
     ids, flow-control overflow, SETTINGS/PING/RST floods, streams that never end,
     slowloris, connection churn;
  3. gRPC framing abuse: impossible lengths, compression, truncated or repeated
     messages.

Methods with side effects on the host are only ever called with input that cannot
have any: RunPodSandbox, CreateContainer, StartContainer, ExecSync and
CheckpointContainer get no random valid messages (random bytes that could decode to
one are made undecodable), and PullImage only ever sees references that are invalid
or name 127.0.0.1 on a port that is bound but not listening.

Memory figures (RssAnon, VmHWM, KiB) are printed; run with -rP to see them. They are
checked on a release build only: ASan keeps freed memory in quarantine.
"""
import os
import random
import socket
import struct
import threading
import time
import urllib.parse
import zlib

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor as FD

from conftest import MiB, channel_options, sanitizer_report, unix_connect, wait_until
from h2raw import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PADDED,
                   PING, PREFACE, PRIORITY, PUSH_PROMISE, RST_STREAM, SETTINGS,
                   SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE, WINDOW_UPDATE, Conn,
                   frame, grpc_headers, grpc_message, hpack_literal, settings)

VERSION = "/runtime.v1.RuntimeService/Version"
PULL = "/runtime.v1.ImageService/PullImage"
FS_INFO = "/runtime.v1.ImageService/ImageFsInfo"

CALL_DEADLINE = 5.0   # seconds each fuzzed call may take
PULL_DEADLINE = 2.0   # PullImage retries a refused connection; the client gives up first
SUBSCRIPTION_DEADLINE = 0.5  # GetContainerEvents streams until then: no need to wait longer
SLACK = 2.0           # how late past its deadline a call may end (client scheduling)
BATCH = 32            # unary calls in flight at once

# Methods that would touch the host given a valid request: no random valid messages.
HOST_EFFECTS = {"RunPodSandbox", "CreateContainer", "StartContainer", "ExecSync",
                "CheckpointContainer"}

GRPC_OK, GRPC_INTERNAL, GRPC_INVALID_ARGUMENT = 0, 13, 3
GRPC_UNIMPLEMENTED, GRPC_RESOURCE_EXHAUSTED = 12, 8

# HTTP/2 error codes.
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED = 0, 1, 3, 5
FRAME_SIZE_ERROR, CANCEL, ENHANCE_YOUR_CALM = 6, 8, 11


def is_sanitized(path):
    with open(path, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__ubsan_handle" in data


# --------------------------------------------------------------------------
# Health, memory
# --------------------------------------------------------------------------

class Watch:
    """Follows one daemon: liveness, Version, new sanitizer output, RssAnon."""

    def __init__(self, d):
        self.d = d
        self.sanitized = is_sanitized(d.binary)
        self.offset = 0

    def check(self, what):
        d = self.d
        assert d.alive(), "tinycrid died after %s (status %s)\n%s" % (
            what, d.proc.returncode, d.stderr_text()[-20000:])
        self.check_sanitizer(what)
        ch = grpc.insecure_channel("unix:" + d.socket, options=channel_options())
        try:
            v = d.api.grpc.RuntimeServiceStub(ch).Version(
                d.api.pb2.VersionRequest(version="v1"), timeout=CALL_DEADLINE)
        except grpc.RpcError as e:
            pytest.fail("Version failed after %s: %s %s" % (what, e.code(), e.details()))
        finally:
            ch.close()
        assert v.runtime_name == "tinycri"
        self.check_sanitizer(what)

    def check_sanitizer(self, what):
        with open(self.d.stderr_path, "rb") as f:
            # Back up a little: a mark may straddle the previous read.
            f.seek(max(0, self.offset - 64))
            text = f.read().decode("utf-8", "replace")
            self.offset = f.tell()
        report = sanitizer_report(text)
        assert report is None, "sanitizer report after %s:\n%s" % (what, report[:20000])

    def rss_kib(self):
        with open("/proc/%d/status" % self.d.pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
        raise AssertionError("no RssAnon for pid %d" % self.d.pid)

    def settled_rss(self, start, what, timeout=10.0, slack_kib=24 * 1024):
        """Wait for RssAnon to come back within slack of start; print and return it.

        Only printed for a sanitizer build: ASan keeps freed memory in quarantine."""
        limit = start + slack_kib
        got = [self.rss_kib()]

        def back():
            got[0] = self.rss_kib()
            return got[0] <= limit
        if not self.sanitized:
            wait_until(back, timeout, what=lambda: "RssAnon of tinycrid back near %d KiB after "
                       "%s (now %d KiB, limit %d KiB)" % (start, what, got[0], limit))
        print("RssAnon %-40s start %7d KiB  end %7d KiB  (+%d)"
              % (what, start, got[0], got[0] - start))
        return got[0]


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def raw_conn(d, timeout=10.0):
    c = Conn(unix_connect(d.socket, timeout=timeout))
    c.start()
    return c


def drain(sock, timeout=2.0):
    """Read and drop what the server sends until it closes or goes quiet for timeout."""
    sock.settimeout(timeout)
    try:
        while sock.recv(1 << 16):
            pass
        return True
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def read_until_closed(c, timeout=5.0):
    """Read frames until the server closes the connection; False when it stays open."""
    c.sock.settimeout(timeout)
    try:
        while c.read_one() is not None:
            pass
    except socket.timeout:
        return False
    except ConnectionResetError:
        pass  # closed with our last frames unread
    return True


def send_quietly(sock, data):
    """Send what the server still takes; it may close the connection halfway (a flood)."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


# --------------------------------------------------------------------------
# Random protobuf messages, written straight to the wire format
# --------------------------------------------------------------------------

VARINT_TYPES = {FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_BOOL,
                FD.TYPE_ENUM}
ZIGZAG_TYPES = {FD.TYPE_SINT32, FD.TYPE_SINT64}
FIXED32_TYPES = {FD.TYPE_FIXED32, FD.TYPE_SFIXED32, FD.TYPE_FLOAT}
FIXED64_TYPES = {FD.TYPE_FIXED64, FD.TYPE_SFIXED64, FD.TYPE_DOUBLE}

INTERESTING_INTS = [0, 1, -1, 2, 255, 4096, 2**31 - 1, -2**31, 2**32 - 1, 2**32, 2**53 + 1,
                    2**63 - 1, -2**63, 2**64 - 1]
FIXED_PATTERNS = [b"\x00" * 8, b"\xff" * 8, struct.pack("<d", float("nan")),
                  struct.pack("<d", float("inf")), struct.pack("<d", -0.0),
                  struct.pack("<f", float("nan")) * 2]
WORDS = ["", "a", "v1", "default", "kube-system", "../../../../etc/passwd", "/proc/self/mem",
         "%s%s%s%n%x%p", "${HOME}", "$(reboot)", "`id`", "a\x00b", "\x00", "\r\n\r\n",
         "ünïcødé ☃ 𝄞 \u202egnp.exe", "\ufeff\ufffd\U0010ffff", "sha256:" + "0" * 64,
         "docker.io/library/busybox:latest", "-1", "NaN", "%00", "\\x00", "\"'<>&;|",
         "\u0000\u0001\u001f\u007f\u0080\u00ff"]
INVALID_UTF8 = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"a\xfeb", b"\xe2\x82"]


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(number, wire_type):
    return varint(number << 3 | wire_type)


def length_delimited(number, payload):
    return tag(number, 2) + varint(len(payload)) + payload


class MessageGen:
    """Random but well-formed protobuf encodings of a message type.

    overrides: {field full name: callable(rng) -> bytes} for string fields whose values
    must stay harmless (PullImage references); force: more fields (by full name) to set.
    Overridden and forced fields are nearly always set."""

    def __init__(self, seed, max_bytes=2 * MiB, huge=True, overrides=None, force=()):
        self.rng = random.Random(seed)
        self.max_bytes = max_bytes
        self.huge = huge
        self.overrides = overrides or {}
        self.force = set(force) | set(self.overrides)
        self.used = 0

    def message(self, desc):
        self.used = 0
        return self._message(desc, 0)

    def _room(self, n):
        if self.used + n > self.max_bytes:
            return False
        self.used += n
        return True

    def string(self):
        r = self.rng
        pick = r.random()
        if pick < 0.35:
            s = r.choice(WORDS).encode()
        elif pick < 0.55:
            s = "".join(chr(r.randint(0x20, 0x7e)) for _ in range(r.randint(0, 64))).encode()
        elif pick < 0.70:
            cps = [r.choice([r.randint(0, 0x7f), r.randint(0x80, 0x7ff), r.randint(0x800, 0xd7ff),
                             r.randint(0xe000, 0xffff), r.randint(0x10000, 0x10ffff)])
                   for _ in range(r.randint(1, 32))]
            s = "".join(map(chr, cps)).encode()
        elif pick < 0.80:
            s = r.choice(INVALID_UTF8) * r.randint(1, 8)
        elif pick < 0.96:
            s = bytes([r.randint(0x61, 0x7a)]) * r.randint(100, 70000)
        elif self.huge:
            s = (b"x\x00" if r.random() < 0.5 else b"y") * (r.randint(256, MiB) // 2)
        else:
            s = b"z" * 4096
        return s if self._room(len(s)) else b""

    def scalar(self, f):
        """(wire type, encoded value) of one value of a non-message field."""
        r = self.rng
        t = f.type
        if t in VARINT_TYPES:
            if t == FD.TYPE_BOOL:
                v = r.choice([0, 1, 2, 255, 2**64 - 1])
            elif t == FD.TYPE_ENUM and r.random() < 0.6:
                v = r.choice(f.enum_type.values).number
            else:
                v = r.choice(INTERESTING_INTS) if r.random() < 0.7 else r.getrandbits(64)
            return 0, varint(v)
        if t in ZIGZAG_TYPES:
            v = r.choice(INTERESTING_INTS + [r.getrandbits(63)])
            return 0, varint((v << 1) ^ (v >> 63))
        if t in FIXED32_TYPES:
            return 5, r.choice(FIXED_PATTERNS + [r.randbytes(8)])[:4]
        if t in FIXED64_TYPES:
            return 1, r.choice(FIXED_PATTERNS + [r.randbytes(8)])
        if f.full_name in self.overrides:
            return 2, self.overrides[f.full_name](r)
        if t == FD.TYPE_BYTES:
            return 2, r.randbytes(r.choice([0, 1, 16, 300, 5000]))
        return 2, self.string()

    def count(self, f, depth):
        r = self.rng
        if r.random() < 0.1 and depth < 4:
            is_map = f.message_type is not None and f.message_type.GetOptions().map_entry
            scalar = f.message_type is None
            # Many entries: maps and scalar lists cheaply, nested messages less so.
            return r.randint(200, 3000 if (is_map or scalar) else 400)
        return r.choice([0, 1, 1, 2, 3, 8])

    def _message(self, desc, depth):
        r = self.rng
        out = bytearray()
        for f in desc.fields:
            forced = f.full_name in self.force
            if not forced and r.random() < 0.35 + 0.08 * depth:
                continue
            if forced and r.random() < 0.05:
                continue
            if f.label == FD.LABEL_REPEATED:
                n = self.count(f, depth)
                if f.message_type is None and f.type not in (FD.TYPE_STRING, FD.TYPE_BYTES) \
                        and r.random() < 0.5:
                    packed = b"".join(self.scalar(f)[1] for _ in range(n))
                    if self._room(len(packed)):
                        out += length_delimited(f.number, packed)
                    continue
                for _ in range(n):
                    out += self.field(f, depth)
                    if self.used >= self.max_bytes:
                        break
            else:
                out += self.field(f, depth)
                if r.random() < 0.05:
                    out += self.field(f, depth)  # a singular field twice: last wins / merge
        if r.random() < 0.15:
            out += self.unknown_field()
        return bytes(out)

    def field(self, f, depth):
        if f.message_type is not None:
            inner = self._message(f.message_type, depth + 1)
            self._room(len(inner) + 6)
            return length_delimited(f.number, inner)
        wt, value = self.scalar(f)
        if wt == 2:
            return length_delimited(f.number, value)
        self._room(len(value) + 2)
        return tag(f.number, wt) + value

    def unknown_field(self):
        r = self.rng
        number = r.choice([1000, 4095, 2**29 - 1, r.randint(100, 2**29 - 1)])
        wt = r.choice([0, 1, 2, 5])
        value = {0: varint(r.getrandbits(64)), 1: r.randbytes(8), 5: r.randbytes(4),
                 2: varint(64) + r.randbytes(64)}[wt]
        return tag(number, wt) + value


def closed_port():
    """A TCP port on 127.0.0.1 that is bound but not listening: connecting is refused.
    Returns (socket that keeps it, port)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def pull_ref_factory(port):
    """Image references that are invalid, or name 127.0.0.1:port (refused): nothing else."""
    def make(r):
        pick = r.random()
        name = "/".join("".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                                for _ in range(r.randint(1, 12))) for _ in range(r.randint(1, 3)))
        if pick < 0.4:
            suffix = r.choice(["", ":latest", ":v1.2", "@sha256:" + "%064x" % r.getrandbits(256)])
            return ("127.0.0.1:%d/%s%s" % (port, name, suffix)).encode()
        if pick < 0.6:
            # A space or a non-ASCII byte makes any reference invalid before any lookup.
            return (name + r.choice([" ", "\t", "\x00", "é", "\x7f"]) + name).encode()
        if pick < 0.7:
            return b""
        if pick < 0.8:
            return r.choice(INVALID_UTF8) + name.encode()
        if pick < 0.9:
            return ("127.0.0.1:%d/%s " % (port, "a/" * r.randint(100, 3000))).encode()
        return (" " + "x" * r.randint(4000, 70000)).encode()
    return make


def harmless_bytes(rng, max_len):
    """Random bytes that no protobuf parser accepts: they start with wire type 7."""
    return b"\x0f" + rng.randbytes(rng.randint(0, max_len))


# --------------------------------------------------------------------------
# Calling every method
# --------------------------------------------------------------------------

def is_server_streaming(m):
    return bool(m.server_streaming)


class Caller:
    """Sends raw request bytes to a method and records how each call ended."""

    def __init__(self, d):
        self.d = d
        self.ch = grpc.insecure_channel("unix:" + d.socket, options=channel_options())
        self.codes = {}  # method name -> {status code name: count}

    def close(self):
        self.ch.close()

    def record(self, name, code):
        per = self.codes.setdefault(name, {})
        per[code.name] = per.get(code.name, 0) + 1

    def run(self, m, payloads):
        """Call method m once per payload; assert each ends in time with a status."""
        path = "/%s/%s" % (m.containing_service.full_name, m.name)
        deadline = {"PullImage": PULL_DEADLINE, "GetContainerEvents": SUBSCRIPTION_DEADLINE}.get(
            m.name, CALL_DEADLINE)
        if is_server_streaming(m):
            stream = self.ch.unary_stream(path)
            for p in payloads:
                t0 = time.monotonic()
                code = grpc.StatusCode.OK
                try:
                    for _ in stream(p, timeout=deadline):
                        pass
                except grpc.RpcError as e:
                    code = e.code()
                self.finished(m, code, time.monotonic() - t0, deadline, len(p))
            return
        unary = self.ch.unary_unary(path)
        for i in range(0, len(payloads), BATCH):
            batch = payloads[i:i + BATCH]
            t0 = time.monotonic()
            futures = [unary.future(p, timeout=deadline) for p in batch]
            for p, fut in zip(batch, futures):
                try:
                    fut.result(timeout=deadline + SLACK)
                    code = grpc.StatusCode.OK
                except grpc.FutureTimeoutError:
                    pytest.fail("%s: no status %.0fs past the deadline" % (m.name, SLACK))
                except grpc.RpcError as e:
                    code = e.code()
                self.finished(m, code, time.monotonic() - t0, deadline, len(p))

    def finished(self, m, code, elapsed, deadline, size):
        self.record(m.name, code)
        assert elapsed <= deadline + SLACK, "%s (%d bytes): %s after %.1fs" % (
            m.name, size, code, elapsed)
        # Only a pull can legitimately outlast its deadline (it retries a refused
        # connection), and an events subscription (it streams until the client
        # leaves); anything else must answer by itself.
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            assert m.name in ("PullImage", "GetContainerEvents"), \
                "%s (%d bytes) did not answer within %.0fs" % (m.name, size, deadline)
        # UNAVAILABLE would mean the connection broke under us.
        assert code != grpc.StatusCode.UNAVAILABLE, "%s (%d bytes): connection lost" % (
            m.name, size)

    def summary(self):
        return ", ".join("%s=%s" % (k, "/".join("%s:%d" % kv for kv in sorted(v.items())))
                         for k, v in sorted(self.codes.items()))


def all_methods(api):
    return [m for _, m in api.methods()]


def test_every_method_empty_message(daemon, api):
    d = daemon()
    w = Watch(d)
    caller = Caller(d)
    try:
        for m in all_methods(api):
            caller.run(m, [b""])
        w.check("an empty message to every method")
        print(caller.summary())
    finally:
        caller.close()


def test_every_method_random_bytes(daemon, api):
    d = daemon()
    w = Watch(d)
    rng = random.Random(0x7c1b17e5)
    caller = Caller(d)
    try:
        for m in all_methods(api):
            payloads = []
            for _ in range(16):
                n = rng.choice([0, 1, 2, 5, 16, 100, 1000, 4096, rng.randint(0, 4096)])
                if m.name in HOST_EFFECTS or m.name == "PullImage":
                    # Random bytes could decode to a valid request (an image reference).
                    payloads.append(harmless_bytes(rng, n))
                else:
                    payloads.append(rng.randbytes(n))
            caller.run(m, payloads)
            w.check("random bytes to %s" % m.name)
        print(caller.summary())
    finally:
        caller.close()


@pytest.mark.parametrize("service", ["RuntimeService", "ImageService"])
def test_every_method_random_messages(daemon, api, service):
    d = daemon()
    w = Watch(d)
    keep, port = closed_port()
    caller = Caller(d)
    try:
        overrides = {"runtime.v1.ImageSpec.image": pull_ref_factory(port)}
        start = None
        for i, m in enumerate(all_methods(api)):
            if m.containing_service.name != service or m.name in HOST_EFFECTS:
                continue
            pull = m.name == "PullImage"
            gen = MessageGen(seed=0x5eed0000 + i, overrides=overrides if pull else None,
                             force=["runtime.v1.PullImageRequest.image"] if pull else ())
            n = 24 if m.name in ("PullImage", "UpdateRuntimeConfig", "ImageStatus",
                                 "ListImages", "RemoveImage", "Status", "Version") else 8
            payloads = [gen.message(m.input_type) for _ in range(n)]
            caller.run(m, payloads)
            w.check("random messages to %s" % m.name)
            if start is None:
                start = w.rss_kib()
        print(caller.summary())
        w.settled_rss(start, "random messages (%s)" % service)
    finally:
        caller.close()
        keep.close()


def test_pull_cancelled_by_deadline_is_cleaned_up(daemon, api):
    """Pulls from a refused registry, abandoned by their client: none may linger."""
    d = daemon()
    w = Watch(d)
    keep, port = closed_port()
    try:
        stub = api.grpc.ImageServiceStub(d.channel())
        futs = [stub.PullImage.future(api.pb2.PullImageRequest(
            image=api.pb2.ImageSpec(image="127.0.0.1:%d/robust/%d:v1" % (port, i))),
            timeout=0.2 + (i % 5) * 0.1) for i in range(50)]
        for f in futs:
            with pytest.raises(grpc.RpcError) as ei:
                f.result()
            assert ei.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                       grpc.StatusCode.UNAVAILABLE), ei.value.details()
        w.check("50 abandoned pulls")
    finally:
        keep.close()


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for pid %d" % pid)


def field_bombs(api):
    """(method, request bytes) pairs just under 16 MiB made of millions of tiny fields."""
    n = (16 * MiB - 64) // 2

    def number(message, field):
        return getattr(api.pb2, message).DESCRIPTOR.fields_by_name[field].number
    port_mappings = number("PodSandboxConfig", "port_mappings")
    return [
        ("Version", b"\x0a\x00" * n),                       # version = "" again and again
        ("Version", b"\xf8\x01\x00" * (16 * MiB // 3 - 32)),  # unknown field 31
        # PullImage{image: invalid, sandbox_config: {port_mappings: {} x 8M}}
        ("PullImage", length_delimited(1, length_delimited(1, b"x y"))
         + length_delimited(3, bytes([port_mappings << 3 | 2, 0]) * (n - 16))),
        # ...and a packed array of 16M one-byte supplemental groups, 8 bytes each unpacked.
        ("PullImage", length_delimited(3, length_delimited(
            number("PodSandboxConfig", "linux"), length_delimited(
                number("LinuxPodSandboxConfig", "security_context"), length_delimited(
                    number("LinuxSandboxSecurityContext", "supplemental_groups"),
                    b"\x01" * (16 * MiB - 64)))))),
    ]


def test_field_bombs(daemon, api):
    """Requests made of millions of tiny fields are refused before protobuf-c unpacks
    them: it allocates for each one, up to 50 times the size of the request."""
    d = daemon()
    w = Watch(d)
    w.check("start")
    hwm = vm_hwm_kib(d.pid)
    ch = d.channel()
    for name, msg in field_bombs(api):
        assert len(msg) < 16 * MiB
        path = "/runtime.v1.%s/%s" % ("ImageService" if name == "PullImage" else
                                      "RuntimeService", name)
        with pytest.raises(grpc.RpcError) as ei:
            ch.unary_unary(path)(msg, timeout=30)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value.details()
        assert "fields" in ei.value.details()
        w.check("a field bomb to %s" % name)
    peak = vm_hwm_kib(d.pid)
    print("VmHWM before %d KiB, after four 16 MiB field bombs %d KiB (+%d)"
          % (hwm, peak, peak - hwm))
    if not w.sanitized:
        # The request itself is in memory once or twice; unpacked it would be 300-900 MiB.
        assert peak - hwm <= 64 * 1024, "peak grew by %d KiB" % (peak - hwm)


# --------------------------------------------------------------------------
# HTTP/2 abuse
# --------------------------------------------------------------------------

def version_call(stream, api, extra=()):
    body = grpc_message(api.pb2.VersionRequest(version="v1").SerializeToString())
    return (frame(HEADERS, END_HEADERS, stream, grpc_headers(VERSION, extra))
            + frame(DATA, END_STREAM, stream, body))


def assert_version_reply(c, stream, api):
    assert c.wait_stream(stream), "connection closed before stream %d ended" % stream
    assert stream not in c.resets, "stream %d reset: %d" % (stream, c.resets[stream])
    status, message = c.grpc_status(stream)
    assert status == GRPC_OK, (status, message)
    (msg,) = c.grpc_messages(stream)
    assert api.pb2.VersionResponse.FromString(msg).runtime_name == "tinycri"


def random_frame(r):
    ftype = r.choice([DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY,
                      WINDOW_UPDATE, CONTINUATION, r.randint(10, 255)])
    flags = r.choice([0, END_STREAM, END_HEADERS, END_STREAM | END_HEADERS, PADDED,
                      r.getrandbits(8)])
    stream = r.choice([0, 1, 2, 3, r.randint(1, 101) | 1, 2**31 - 1, r.getrandbits(32)])
    sized = {RST_STREAM: 4, PING: 8, WINDOW_UPDATE: 4, PRIORITY: 5, SETTINGS: 6 * r.randint(0, 4),
             GOAWAY: 8}
    if ftype in sized and r.random() < 0.7:
        payload = r.randbytes(sized[ftype])
    else:
        payload = r.randbytes(r.choice([0, 1, 5, 9, 64, 1024, r.randint(0, 16384)]))
    if ftype == HEADERS and r.random() < 0.5:
        payload = grpc_headers(r.choice([VERSION, FS_INFO, "/x", ""]))
        if r.random() < 0.3:
            payload = payload[:r.randint(0, len(payload))]
    return frame(ftype, flags, stream & 0xFFFFFFFF, payload)


def test_random_frames_after_preface(daemon, api):
    d = daemon()
    w = Watch(d)
    w.check("start")
    start = w.rss_kib()
    r = random.Random(0xf4a3e5)
    for i in range(60):
        s = unix_connect(d.socket)
        data = PREFACE + frame(SETTINGS, 0, 0)
        if i % 3 == 0:
            data += version_call(1, api)
        data += b"".join(random_frame(r) for _ in range(r.randint(1, 40)))
        send_quietly(s, data)
        drain(s, timeout=0.05 if i % 4 else 0.5)
        s.close()
    w.check("random frames")
    w.settled_rss(start, "random frames")


def continuation_flood(stream, value_len, piece, api):
    """A request whose header block is split into CONTINUATION frames of `piece` bytes."""
    block = grpc_headers(VERSION, [("x-pad", "p" * value_len)])
    frames = [frame(HEADERS, 0, stream, block[:piece])]
    for off in range(piece, len(block), piece):
        last = off + piece >= len(block)
        frames.append(frame(CONTINUATION, END_HEADERS if last else 0, stream,
                            block[off:off + piece]))
    return b"".join(frames)


@pytest.mark.parametrize("case", ["header-1MiB-in-16KiB-continuations",
                                  "header-64KiB-in-1-byte-continuations",
                                  "5000-headers", "header-over-8KiB", "never-ending-block",
                                  "continuation-without-headers"])
def test_huge_header_blocks(daemon, api, case):
    d = daemon()
    w = Watch(d)
    w.check("start")
    start = w.rss_kib()
    c = raw_conn(d)
    c.sock.settimeout(10)
    if case == "header-1MiB-in-16KiB-continuations":
        send_quietly(c.sock, continuation_flood(1, MiB, 16384, api))
    elif case == "header-64KiB-in-1-byte-continuations":
        send_quietly(c.sock, continuation_flood(1, 65536, 1, api))
    elif case == "5000-headers":
        block = grpc_headers(VERSION, [("x-h%d" % i, "v") for i in range(5000)])
        send_quietly(c.sock, frame(HEADERS, 0, 1, block[:16384])
                     + b"".join(frame(CONTINUATION, 0 if off + 16384 < len(block) else END_HEADERS,
                                      1, block[off:off + 16384])
                                for off in range(16384, len(block), 16384))
                     + frame(DATA, END_STREAM, 1, grpc_message(b"")))
    elif case == "header-over-8KiB":
        # Within the 16 KiB header list, but one field is over 8 KiB.
        send_quietly(c.sock, version_call(1, api, [("x-big", "b" * 9000)]))
    elif case == "never-ending-block":
        send_quietly(c.sock, frame(HEADERS, 0, 1, grpc_headers(VERSION)))
        for _ in range(200):
            if not send_quietly(c.sock, frame(CONTINUATION, 0, 1, hpack_literal("x-a", "b" * 100))):
                break
    else:
        send_quietly(c.sock, frame(CONTINUATION, END_HEADERS, 1, grpc_headers(VERSION)))
    # Whatever the daemon made of it, it answers with a status, a reset or a GOAWAY.
    c.sock.settimeout(5)
    try:
        while 1 not in c.ended and 1 not in c.resets and c.read_one() is not None:
            pass
    except socket.timeout:
        pytest.fail("%s: no status, reset or GOAWAY within 5s" % case)
    except ConnectionResetError:
        pass
    if 1 in c.ended:
        status, message = c.grpc_status(1)
        print("%s: grpc-status %s %r" % (case, status, message))
        assert status not in (None, GRPC_OK), (status, message)
    else:
        print("%s: reset %s goaway %s" % (case, c.resets.get(1), c.goaway))
    c.sock.close()
    w.check(case)
    w.settled_rss(start, case)


@pytest.mark.parametrize("case", ["headers-on-stream-0", "headers-on-even-stream",
                                  "decreasing-stream-id", "data-on-stream-0", "rst-on-stream-0",
                                  "rst-on-idle-stream", "window-update-on-idle-stream",
                                  "priority-on-itself", "push-promise-from-client",
                                  "max-stream-id-then-more", "stream-id-reuse"])
def test_invalid_stream_ids(daemon, api, case):
    d = daemon()
    w = Watch(d)
    c = raw_conn(d)
    frames = {
        "headers-on-stream-0": frame(HEADERS, END_HEADERS | END_STREAM, 0, grpc_headers(VERSION)),
        "headers-on-even-stream": version_call(2, api),
        "decreasing-stream-id": version_call(7, api) + version_call(5, api),
        "data-on-stream-0": frame(DATA, END_STREAM, 0, b"hello"),
        "rst-on-stream-0": frame(RST_STREAM, 0, 0, struct.pack(">I", CANCEL)),
        "rst-on-idle-stream": frame(RST_STREAM, 0, 9, struct.pack(">I", CANCEL)),
        "window-update-on-idle-stream": frame(WINDOW_UPDATE, 0, 11, struct.pack(">I", 100)),
        "priority-on-itself": frame(PRIORITY, 0, 1, struct.pack(">IB", 1, 16)),
        "push-promise-from-client": frame(PUSH_PROMISE, END_HEADERS, 1,
                                          struct.pack(">I", 2) + grpc_headers(VERSION)),
        "max-stream-id-then-more": version_call(2**31 - 1, api) + version_call(1, api),
        "stream-id-reuse": version_call(1, api) + version_call(1, api),
    }[case]
    send_quietly(c.sock, frames)
    closed = read_until_closed(c, timeout=3)
    print("%s: closed=%s goaway=%s resets=%s" % (case, closed, c.goaway, c.resets))
    c.sock.close()
    w.check(case)


def test_data_on_closed_streams(daemon, api):
    d = daemon()
    w = Watch(d)
    c = raw_conn(d)
    c.send(version_call(1, api))
    assert_version_reply(c, 1, api)
    # DATA after the stream closed on both sides: a stream error or a connection error.
    send_quietly(c.sock, frame(DATA, 0, 1, b"\x00" * 100) + frame(DATA, END_STREAM, 1, b"x"))
    read_until_closed(c, timeout=1)
    c.sock.close()
    # A call the server ended early (oversized prefix) while the client keeps sending.
    c = raw_conn(d)
    c.send(frame(HEADERS, END_HEADERS, 1, grpc_headers(VERSION))
           + frame(DATA, 0, 1, b"\x00\xff\xff\xff\xff"))
    assert c.wait_stream(1)
    status, message = c.grpc_status(1)
    assert status == GRPC_RESOURCE_EXHAUSTED, (status, message)
    for _ in range(50):
        send_quietly(c.sock, frame(DATA, 0, 1, b"\x00" * 16000))
    send_quietly(c.sock, frame(DATA, END_STREAM, 1, b""))
    c.send(version_call(3, api))
    assert_version_reply(c, 3, api)
    c.sock.close()
    w.check("DATA on closed streams")


@pytest.mark.parametrize("case", ["connection-window-overflow", "stream-window-overflow",
                                  "zero-increment", "initial-window-overflow",
                                  "bad-max-frame-size"])
def test_flow_control_abuse(daemon, api, case):
    d = daemon()
    w = Watch(d)
    c = raw_conn(d)
    big = struct.pack(">I", 2**31 - 1)
    data = {
        "connection-window-overflow": frame(WINDOW_UPDATE, 0, 0, big) * 2,
        "stream-window-overflow": frame(HEADERS, END_HEADERS, 1, grpc_headers(VERSION))
        + frame(WINDOW_UPDATE, 0, 1, big) * 2,
        "zero-increment": frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)),
        "initial-window-overflow": frame(HEADERS, END_HEADERS, 1, grpc_headers(VERSION))
        + frame(WINDOW_UPDATE, 0, 1, big)
        + frame(SETTINGS, 0, 0, settings((SETTINGS_INITIAL_WINDOW_SIZE, 2**31 - 1))),
        "bad-max-frame-size": frame(SETTINGS, 0, 0, settings((SETTINGS_MAX_FRAME_SIZE, 1))),
    }[case]
    send_quietly(c.sock, data)
    closed = read_until_closed(c, timeout=3)
    print("%s: closed=%s goaway=%s resets=%s" % (case, closed, c.goaway, c.resets))
    assert closed or c.resets, "%s went unnoticed" % case
    c.sock.close()
    w.check(case)


def test_zero_window_client_and_big_replies(daemon, api):
    """A client that grants no window: replies wait in the daemon, bounded, then go."""
    d = daemon()
    w = Watch(d)
    w.check("start")
    start = w.rss_kib()
    s = unix_connect(d.socket)
    s.sendall(PREFACE + frame(SETTINGS, 0, 0, settings((SETTINGS_INITIAL_WINDOW_SIZE, 0)))
              + b"".join(frame(HEADERS, END_HEADERS, sid,
                               grpc_headers("/runtime.v1.RuntimeService/Status"))
                         + frame(DATA, END_STREAM, sid, grpc_message(b"\x08\x01"))
                         for sid in range(1, 400, 2)))
    time.sleep(0.5)
    w.check("200 replies held back by a zero window")
    s.close()
    w.settled_rss(start, "zero-window replies")


@pytest.mark.parametrize("what", ["settings", "settings-ack", "ping", "ping-ack", "priority",
                                  "empty-data", "window-update"])
def test_control_frame_floods(daemon, api, what):
    """Floods of small frames, with the client not reading what the daemon answers."""
    d = daemon()
    w = Watch(d)
    w.check("start")
    start = w.rss_kib()
    one = {
        "settings": frame(SETTINGS, 0, 0, settings((SETTINGS_INITIAL_WINDOW_SIZE, 65535))),
        "settings-ack": frame(SETTINGS, ACK, 0),
        "ping": frame(PING, 0, 0, b"12345678"),
        "ping-ack": frame(PING, ACK, 0, b"12345678"),
        "priority": frame(PRIORITY, 0, 3, struct.pack(">IB", 0, 16)),
        "empty-data": b"",
        "window-update": frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)),
    }[what]
    s = unix_connect(d.socket)
    s.settimeout(10)
    head = PREFACE + frame(SETTINGS, 0, 0)
    if what == "empty-data":
        head += frame(HEADERS, END_HEADERS, 1, grpc_headers(VERSION))
        one = frame(DATA, 0, 1, b"")
    n = 100000
    ok = send_quietly(s, head + one * n)
    closed = drain(s, timeout=0.5) if ok else True
    print("%s x%d: all sent=%s, closed by daemon=%s" % (what, n, ok, closed))
    s.close()
    w.check("%s flood" % what)
    w.settled_rss(start, "%s flood" % what)


@pytest.mark.parametrize("method", [VERSION, FS_INFO, PULL])
def test_rapid_reset(daemon, api, method):
    """Open and reset 10,000 streams as fast as possible (CVE-2023-44487)."""
    d = daemon()
    w = Watch(d)
    keep, port = closed_port()
    w.check("start")
    start = w.rss_kib()
    if method == PULL:
        msg = api.pb2.PullImageRequest(image=api.pb2.ImageSpec(
            image="127.0.0.1:%d/rapid/reset:v1" % port)).SerializeToString()
    else:
        msg = b""
    headers = grpc_headers(method)
    body = grpc_message(msg)
    reset = struct.pack(">I", CANCEL)
    # nghttp2 ends a connection that resets too fast; reconnect and go on until 10,000.
    streams = conns = 0
    while streams < 10000:
        s = unix_connect(d.socket)
        conns += 1
        data = PREFACE + frame(SETTINGS, 0, 0)
        sid = 1
        while streams < 10000:
            data += (frame(HEADERS, END_HEADERS, sid, headers)
                     + frame(DATA, END_STREAM, sid, body) + frame(RST_STREAM, 0, sid, reset))
            sid += 2
            streams += 1
            if len(data) > 64 * 1024 and not send_quietly(s, data):
                break
            if len(data) > 64 * 1024:
                data = b""
        else:
            send_quietly(s, data)
        s.close()
    print("rapid reset %s: %d connections" % (method, conns))
    w.check("rapid reset of %s" % method)
    w.settled_rss(start, "rapid reset %s" % method.rsplit("/", 1)[1])
    keep.close()


def open_streams(d, streams, part):
    """A connection with `streams` calls that each send `part` and never end. Returns it
    once the daemon has read all of it (it answered a PING sent last)."""
    c = raw_conn(d)
    c.sock.settimeout(30)
    data = b""
    for sid in range(1, 2 * streams, 2):
        data += frame(HEADERS, END_HEADERS, sid, grpc_headers(VERSION))
        for off in range(0, len(part), 16384):
            data += frame(DATA, 0, sid, part[off:off + 16384])
        if len(data) > MiB:
            c.send(data)
            data = b""
    c.send(data + frame(PING, 0, 0, b"all-read"))
    while True:
        f = c.read_one()
        assert f is not None, "connection closed while streams were opened"
        if f[0] == PING and f[1] & ACK and f[3] == b"all-read":
            return c


def refused(c):
    """How many of the connection's streams ended with RESOURCE_EXHAUSTED."""
    return sum(1 for s in c.ended if c.grpc_status(s)[0] == GRPC_RESOURCE_EXHAUSTED)


def test_max_streams_never_ending_without_data(daemon, api):
    """1000 streams (the daemon's limit) announcing 1 MiB each and sending none of it."""
    d = daemon()
    w = Watch(d)
    w.check("start")
    start = w.rss_kib()
    c = open_streams(d, 1000, b"\x00\x00\x10\x00\x00")
    held = w.rss_kib()
    print("RssAnon while 1000 streams announce 1 MiB each: %d KiB (+%d)" % (held, held - start))
    w.check("1000 open streams")
    c.sock.close()
    w.settled_rss(start, "1000 never-ending streams")


def test_never_ending_streams_hold_bounded_memory(daemon, api):
    """Three clients open 400 calls each, send 64 KiB of every request and never end one.

    Each call may buffer up to max_recv_message_size (16 MiB), but what all calls hold
    is capped (4 x 16 MiB for the daemon; 2 x 16 MiB per connection): the calls past
    the cap are refused with RESOURCE_EXHAUSTED while the others stay open, and memory
    stays bounded however often it is done."""
    d = daemon()
    w = Watch(d)
    w.check("start")
    start = w.rss_kib()
    part = b"\x00\x01\x00\x00\x00" + b"\x0a" * (64 * 1024 - 5)
    peaks = []
    for rnd in range(2):
        conns = [open_streams(d, 400, part) for _ in range(3)]
        peaks.append(w.rss_kib())
        n_refused = [refused(c) for c in conns]
        print("round %d: RssAnon %d KiB (+%d), calls refused per connection %s"
              % (rnd, peaks[-1], peaks[-1] - start, n_refused))
        # Offered 3 x 400 x 64 KiB = 75 MiB against a 64 MiB cap.
        assert sum(n_refused) >= 1200 - 1024, n_refused
        # A call that brings no bytes is served all the same; one that does is either
        # served or refused with a clear status.
        ch = grpc.insecure_channel("unix:" + d.socket, options=channel_options())
        try:
            stub = api.grpc.RuntimeServiceStub(ch)
            assert stub.Version(api.pb2.VersionRequest(), timeout=CALL_DEADLINE).runtime_name
            try:
                stub.Version(api.pb2.VersionRequest(version="v1"), timeout=CALL_DEADLINE)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.details()
        finally:
            ch.close()
        for c in conns:
            c.sock.close()
        w.check("round %d of never-ending streams" % rnd)
    if not w.sanitized:
        assert peaks[0] - start <= 96 * 1024, "held %d KiB" % (peaks[0] - start)
        assert peaks[1] <= peaks[0] + 8 * 1024, "memory grew: %s" % peaks


def test_slowloris(daemon, api):
    """20 clients sending one byte every 10 ms, preface included, while others are served."""
    d = daemon()
    w = Watch(d)
    msg = (PREFACE + frame(SETTINGS, 0, 0) + version_call(1, api))
    socks = [unix_connect(d.socket) for _ in range(20)]
    stop = threading.Event()
    latencies = []

    def others():
        ch = grpc.insecure_channel("unix:" + d.socket, options=channel_options())
        stub = api.grpc.RuntimeServiceStub(ch)
        while not stop.is_set():
            t0 = time.monotonic()
            stub.Version(api.pb2.VersionRequest(), timeout=CALL_DEADLINE)
            latencies.append(time.monotonic() - t0)
            time.sleep(0.02)
        ch.close()
    t = threading.Thread(target=others)
    t.start()
    try:
        for i in range(len(msg)):
            for s in socks:
                s.sendall(msg[i:i + 1])
            time.sleep(0.01)
    finally:
        stop.set()
        t.join()
    for s in socks:
        c = Conn(s)
        c.sock.settimeout(5)
        assert_version_reply(c, 1, api)
        s.close()
    print("slowloris: %d bytes each, %d other calls, worst latency %.0f ms"
          % (len(msg), len(latencies), 1000 * max(latencies)))
    assert max(latencies) < 1.0
    w.check("slowloris")


def connect_retrying(path, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return unix_connect(path)
        except (BlockingIOError, ConnectionRefusedError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.002)


def test_connection_churn(daemon, api):
    d = daemon()
    w = Watch(d)
    w.check("start")
    d.close_channels()
    start = w.rss_kib()
    before = fd_count(d.pid)
    r = random.Random(0xc407)
    for i in range(1000):
        s = connect_retrying(d.socket)
        kind = r.randint(0, 4)
        if kind == 1:
            send_quietly(s, PREFACE[:r.randint(1, len(PREFACE))])
        elif kind == 2:
            send_quietly(s, PREFACE + frame(SETTINGS, 0, 0) + version_call(1, api))
        elif kind == 3:
            send_quietly(s, PREFACE + frame(SETTINGS, 0, 0)
                         + frame(HEADERS, END_HEADERS, 1, grpc_headers(FS_INFO)))
        elif kind == 4:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            send_quietly(s, PREFACE + frame(SETTINGS, 0, 0) + version_call(1, api))
        s.close()
    wait_until(lambda: fd_count(d.pid) <= before, timeout=10,
               what=lambda: "fd count back to %d (now %d)" % (before, fd_count(d.pid)))
    w.check("1000 connections")
    w.settled_rss(start, "connection churn")


# --------------------------------------------------------------------------
# gRPC framing abuse
# --------------------------------------------------------------------------

def framing_case(case, api):
    """(extra headers, DATA frames) of stream 1, and the grpc-status expected."""
    msg = api.pb2.VersionRequest(version="v1").SerializeToString()
    one = grpc_message(msg)
    gz = zlib.compressobj(wbits=31)
    gzipped = gz.compress(msg) + gz.flush()
    return {
        "length-4GiB": ([], [frame(DATA, END_STREAM, 1, b"\x00\xff\xff\xff\xff")],
                        GRPC_RESOURCE_EXHAUSTED),
        "length-4GiB-with-body": ([], [frame(DATA, 0, 1, b"\x00\xff\xff\xff\xff" + b"x" * 16000)]
                                  + [frame(DATA, 0, 1, b"x" * 16000)] * 20
                                  + [frame(DATA, END_STREAM, 1, b"")], GRPC_RESOURCE_EXHAUSTED),
        "gzip-compressed": ([("grpc-encoding", "gzip")],
                            [frame(DATA, END_STREAM, 1,
                                   b"\x01" + struct.pack(">I", len(gzipped)) + gzipped)],
                            GRPC_UNIMPLEMENTED),
        "compressed-flag-without-encoding": ([], [frame(DATA, END_STREAM, 1, b"\x01" + one[1:])],
                                             GRPC_INTERNAL),
        "flag-0x80": ([], [frame(DATA, END_STREAM, 1, b"\x80" + one[1:])], GRPC_INTERNAL),
        "truncated-message": ([], [frame(DATA, END_STREAM, 1, one[:-1])], GRPC_INTERNAL),
        "truncated-prefix": ([], [frame(DATA, END_STREAM, 1, one[:3])], GRPC_INTERNAL),
        "two-messages": ([], [frame(DATA, END_STREAM, 1, one + one)], GRPC_INVALID_ARGUMENT),
        "two-messages-two-frames": ([], [frame(DATA, 0, 1, one), frame(DATA, END_STREAM, 1, one)],
                                    GRPC_INVALID_ARGUMENT),
        "no-message": ([], [frame(DATA, END_STREAM, 1, b"")], GRPC_INVALID_ARGUMENT),
        "one-byte-frames": ([], [frame(DATA, 0, 1, one[i:i + 1]) for i in range(len(one))]
                            + [frame(DATA, END_STREAM, 1, b"")], GRPC_OK),
        "padded-data": ([], [frame(DATA, END_STREAM | PADDED, 1, bytes([200]) + one + b"\0" * 200)],
                        GRPC_OK),
        "bad-timeout": ([("grpc-timeout", "99999999999H")], [frame(DATA, END_STREAM, 1, one)],
                        GRPC_INTERNAL),
    }[case]


@pytest.mark.parametrize("case", ["length-4GiB", "length-4GiB-with-body", "gzip-compressed",
                                  "compressed-flag-without-encoding", "flag-0x80",
                                  "truncated-message", "truncated-prefix", "two-messages",
                                  "two-messages-two-frames", "no-message", "one-byte-frames",
                                  "padded-data", "bad-timeout"])
def test_grpc_framing_abuse(daemon, api, case):
    d = daemon()
    w = Watch(d)
    extra, frames, want = framing_case(case, api)
    c = raw_conn(d)
    c.sock.settimeout(CALL_DEADLINE)
    c.send(frame(HEADERS, END_HEADERS, 1, grpc_headers(VERSION, extra)))
    for f in frames:
        # The daemon may end the call early and reset the rest; keep sending regardless.
        send_quietly(c.sock, f)
    assert c.wait_stream(1), "connection closed instead of a status"
    status, message = c.grpc_status(1)
    print("%s: grpc-status %s %r" % (case, status, message))
    assert status == want, (status, message)
    if want != GRPC_OK:
        assert message, "no grpc-message with status %d" % status
    # The connection itself is fine: another call on it works.
    c.send(version_call(3, api))
    assert_version_reply(c, 3, api)
    c.sock.close()
    w.check(case)


def test_error_message_quoting_invalid_utf8_is_decodable(daemon, api):
    """grpc-message is percent-encoded UTF-8; an error quoting a client's bytes that are
    not UTF-8 must still decode (a gRPC client drops, or chokes on, one that does not).
    A string field that is not UTF-8 is refused at the request boundary, naming the
    field; a :path that is not UTF-8 is quoted, with U+FFFD for the bad bytes."""
    d = daemon()
    w = Watch(d)
    c = raw_conn(d)
    c.sock.settimeout(CALL_DEADLINE)
    for i, ref in enumerate([b"\xff\xfe busybox", b"\xed\xa0\x80x", b"ok\xc3"]):
        sid = 2 * i + 1
        req = length_delimited(1, length_delimited(1, ref))  # PullImage{image: {image: ref}}
        c.send(frame(HEADERS, END_HEADERS, sid, grpc_headers(PULL))
               + frame(DATA, END_STREAM, sid, grpc_message(req)))
        assert c.wait_stream(sid)
        status, message = c.grpc_status(sid)
        assert status == GRPC_INVALID_ARGUMENT, (status, message)
        text = urllib.parse.unquote_to_bytes(message).decode("utf-8")  # must not raise
        print("%r -> %r" % (ref, text))
        assert text == "the PullImage request has invalid UTF-8 in image.image"
    for i, path in enumerate([b"/runtime.v1.RuntimeService/\xff\xfeVersion", b"/x/ok\xc3"]):
        sid = 2 * i + 7
        c.send(frame(HEADERS, END_HEADERS, sid, grpc_headers(path))
               + frame(DATA, END_STREAM, sid, grpc_message(b"")))
        assert c.wait_stream(sid)
        status, message = c.grpc_status(sid)
        assert status == GRPC_UNIMPLEMENTED, (status, message)
        text = urllib.parse.unquote_to_bytes(message).decode("utf-8")  # must not raise
        print("%r -> %r" % (path, text))
        assert text.startswith("unknown method /") and "\ufffd" in text
    c.sock.close()
    w.check("errors quoting invalid UTF-8")
