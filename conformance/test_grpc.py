# SPDX-License-Identifier: Apache-2.0
"""The gRPC/HTTP/2 transport: message size caps, bad input, concurrency, clients that
go away. One thread serves everything, so nothing a client does may stall the others."""
import os
import socket
import struct
import time

import grpc
import pytest

from conftest import MiB, RPC_TIMEOUT, unix_connect, wait_until

from h2raw import (ACK, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PREFACE, RST_STREAM,
                   SETTINGS, Conn, frame, grpc_headers, grpc_message, header_block, read_frame)


VERSION = "/runtime.v1.RuntimeService/Version"


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def assert_healthy(d):
    assert d.alive(), "tinycrid died\n" + d.stderr_text()
    ch = d.channel()
    v = d.version(d.api.grpc.RuntimeServiceStub(ch))
    assert v.runtime_name == "tinycri"


# --------------------------------------------------------------------------
# Message size
# --------------------------------------------------------------------------

def test_17mib_message_is_resource_exhausted_and_channel_survives(daemon, api):
    d = daemon()
    ch = d.channel()
    stub = api.grpc.RuntimeServiceStub(ch)
    assert stub.Version(api.pb2.VersionRequest(version="v1"), timeout=RPC_TIMEOUT)
    big = api.pb2.VersionRequest(version="x" * (17 * MiB))
    with pytest.raises(grpc.RpcError) as ei:
        stub.Version(big, timeout=30)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value.details()
    v = stub.Version(api.pb2.VersionRequest(version="v1"), timeout=RPC_TIMEOUT)
    assert v.runtime_name == "tinycri"


def test_message_just_under_16mib_is_accepted(daemon, api):
    d = daemon()
    stub = api.grpc.RuntimeServiceStub(d.channel())
    v = stub.Version(api.pb2.VersionRequest(version="x" * (16 * MiB - 64)), timeout=30)
    assert v.runtime_name == "tinycri"


def test_oversized_messages_repeatedly(daemon, api):
    """The cap must hold every time, and memory for refused messages must not pile up."""
    d = daemon()
    stub = api.grpc.RuntimeServiceStub(d.channel())
    big = api.pb2.VersionRequest(version="x" * (17 * MiB))
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as ei:
            stub.Version(big, timeout=30)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.Version(api.pb2.VersionRequest(), timeout=RPC_TIMEOUT).runtime_name == "tinycri"


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05ab"],
                         ids=["garbage", "huge-length", "truncated-string"])
def test_garbage_message_is_invalid_argument(daemon, payload):
    d = daemon()
    ch = d.channel()
    call = ch.unary_unary(VERSION,
                          request_serializer=lambda x: x, response_deserializer=lambda x: x)
    with pytest.raises(grpc.RpcError) as ei:
        call(payload, timeout=RPC_TIMEOUT)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value.details()
    assert d.version(d.api.grpc.RuntimeServiceStub(ch)).runtime_name == "tinycri"


def test_garbage_message_to_status_is_invalid_argument(daemon):
    d = daemon()
    call = d.channel().unary_unary("/runtime.v1.RuntimeService/Status",
                                   request_serializer=lambda x: x,
                                   response_deserializer=lambda x: x)
    with pytest.raises(grpc.RpcError) as ei:
        call(b"\xff\xff\xff", timeout=RPC_TIMEOUT)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value.details()


def test_raw_preface_is_answered_with_settings(daemon):
    """Checked without any gRPC library: the daemon speaks HTTP/2 with prior knowledge."""
    d = daemon()
    s = unix_connect(d.socket)
    try:
        s.sendall(PREFACE + frame(SETTINGS, 0, 0))
        f = read_frame(s)
        assert f is not None, "connection closed instead of SETTINGS"
        assert f[0] == SETTINGS and f[2] == 0 and not (f[1] & ACK)
    finally:
        s.close()


def test_raw_grpc_call_without_library(daemon, api):
    """A hand-made HEADERS+DATA Version call gets a 200 response and grpc-status 0."""
    d = daemon()
    s = unix_connect(d.socket)
    try:
        msg = api.pb2.VersionRequest(version="v1").SerializeToString()
        body = grpc_message(msg)
        s.sendall(PREFACE + frame(SETTINGS, 0, 0)
                  + frame(HEADERS, END_HEADERS, 1, grpc_headers(VERSION))
                  + frame(DATA, END_STREAM, 1, body))
        got_data = False
        deadline = time.monotonic() + RPC_TIMEOUT
        while time.monotonic() < deadline:
            f = read_frame(s)
            assert f is not None, "connection closed before the call ended"
            ftype, flags, stream, payload = f
            if ftype == SETTINGS and not flags & ACK:
                s.sendall(frame(SETTINGS, ACK, 0))
            if stream != 1:
                continue
            assert ftype != RST_STREAM, "stream reset: %r" % payload
            if ftype == DATA and payload:
                assert payload[0] == 0
                n = struct.unpack(">I", payload[1:5])[0]
                resp = api.pb2.VersionResponse.FromString(payload[5:5 + n])
                assert resp.runtime_name == "tinycri"
                got_data = True
            if flags & END_STREAM:
                break
        assert got_data, "no response message"
    finally:
        s.close()


# --------------------------------------------------------------------------
# What real clients send (grpc-go: kubelet, crictl; grpc-core; grpc-java)
# --------------------------------------------------------------------------

PROTOCOL_ERROR = 1


def raw_version_call(d, api, fields, stream=1, conn=None):
    """One Version call with exactly this header block; returns (conn, stream)."""
    if conn is None:
        conn = Conn(unix_connect(d.socket))
        conn.start()
    body = grpc_message(api.pb2.VersionRequest(version="v1").SerializeToString())
    conn.send(frame(HEADERS, END_HEADERS, stream, header_block(fields))
              + frame(DATA, END_STREAM, stream, body))
    assert conn.wait_stream(stream), "connection closed before stream %d ended" % stream
    return conn, stream


def assert_version_ok(conn, api, stream):
    assert stream not in conn.resets, "stream reset with error %d" % conn.resets[stream]
    assert conn.grpc_status(stream) == (0, "")
    msgs = conn.grpc_messages(stream)
    assert len(msgs) == 1
    assert api.pb2.VersionResponse.FromString(msgs[0]).runtime_name == "tinycri"


BASE = [(":method", "POST"), (":scheme", "http"), (":path", VERSION)]
GRPC = [("content-type", "application/grpc"), ("te", "trailers")]


@pytest.mark.parametrize("authority", [
    "/run/tinycri/tinycri.sock",            # grpc-go: the dial target's path
    "%2Frun%2Ftinycri%2Ftinycri.sock",      # grpc-go, percent-encoded (newer versions)
    "localhost",                            # grpc-core, grpcio
    "unix:/tmp/x.sock", "[::1]:0", "",
    "a" * 2000,                             # long, within the header caps
])
def test_any_authority_is_accepted(daemon, api, authority):
    """grpc-go sends the unix socket path as :authority: nghttp2's HTTP checks refused it,
    so no kubelet and no crictl could make a call."""
    d = daemon()
    conn, st = raw_version_call(d, api, BASE + [(":authority", authority)] + GRPC)
    assert_version_ok(conn, api, st)
    conn.sock.close()


def test_what_kubelet_sends_is_accepted(daemon, api):
    """kubelet's header block: socket-path authority, user-agent, grpc-accept-encoding,
    a grpc-timeout, and metadata; every grpc-timeout unit on one connection."""
    d = daemon()
    conn = None
    for i, timeout in enumerate(["1H", "2M", "120S", "2000m", "2000000u", "99999999n",
                                 "99999999S"]):
        fields = BASE + [(":authority", "/var/run/tinycri/tinycri.sock")] + GRPC + [
            ("user-agent", "grpc-go/1.51.0"),
            ("grpc-accept-encoding", "gzip"),
            ("grpc-timeout", timeout),
            ("x-kubelet-trace", "abc;q=1, \"quoted\""),
            ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ("bin-metadata-bin", "AAEC"),
        ]
        conn, st = raw_version_call(d, api, fields, stream=2 * i + 1, conn=conn)
        assert_version_ok(conn, api, st)
    # grpc-go as crictl builds it: a user-agent of another shape, host instead of :authority.
    fields = BASE + GRPC + [("host", "/run/x.sock"), ("user-agent", "crictl/1.26 grpc-go/1.51")]
    conn, st = raw_version_call(d, api, fields, stream=99, conn=conn)
    assert_version_ok(conn, api, st)
    conn.sock.close()


@pytest.mark.parametrize("fields,why", [
    (BASE[1:] + GRPC, "no :method"),
    ([BASE[0], BASE[2]] + GRPC, "no :scheme"),
    (BASE[:2] + GRPC, "no :path"),
    (BASE + [(":path", VERSION)] + GRPC, "repeated :path"),
    (BASE + [(":status", "200")] + GRPC, "response pseudo-header in a request"),
    (BASE[:1] + GRPC + BASE[1:], "pseudo-header after a regular one"),
    (BASE + [("Content-Type", "application/grpc"), ("te", "trailers")], "upper-case name"),
    (BASE + GRPC + [("connection", "keep-alive")], "connection-specific header"),
    (BASE + GRPC + [("transfer-encoding", "chunked")], "connection-specific header"),
    (BASE + [("content-type", "application/grpc"), ("te", "gzip")], "te other than trailers"),
    (BASE + GRPC + [("x-bad", "a\r\nb")], "CR LF in a value"),
    (BASE + GRPC + [("x-bad", "a\0b")], "NUL in a value"),
    ([BASE[0], BASE[1], (":path", "runtime.v1.RuntimeService/Version")] + GRPC,
     "relative :path"),
])
def test_malformed_request_is_reset_and_connection_survives(daemon, api, fields, why):
    """What HTTP/2 calls malformed still is: the stream is reset with PROTOCOL_ERROR, and
    the next call on the same connection works."""
    d = daemon()
    conn, st = raw_version_call(d, api, fields, stream=1)
    assert conn.resets.get(st) == PROTOCOL_ERROR, "%s: not reset (%r)" % (why, conn.headers)
    conn, st = raw_version_call(d, api, BASE + [(":authority", "/x.sock")] + GRPC, stream=3,
                                conn=conn)
    assert_version_ok(conn, api, st)
    conn.sock.close()
    assert_healthy(d)


def test_http1_request_is_refused_and_connection_closed(daemon):
    d = daemon()
    s = unix_connect(d.socket)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        deadline = time.monotonic() + 5
        closed = False
        while time.monotonic() < deadline:
            try:
                if not s.recv(65536):
                    closed = True
                    break
            except ConnectionResetError:
                closed = True
                break
            except socket.timeout:
                break
        assert closed, "tinycrid kept a connection open after a non-HTTP/2 preface"
    finally:
        s.close()
    assert_healthy(d)


# --------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------

def test_200_concurrent_calls_on_one_channel(daemon, api):
    d = daemon()
    stub = api.grpc.RuntimeServiceStub(d.channel())
    futures = []
    for i in range(200):
        if i % 2:
            futures.append(stub.Version.future(api.pb2.VersionRequest(version="v1"),
                                               timeout=30))
        else:
            futures.append(stub.Status.future(api.pb2.StatusRequest(), timeout=30))
    results = [f.result() for f in futures]
    assert len(results) == 200
    assert all(r.runtime_name == "tinycri" for r in results[1::2])
    assert all(len(r.status.conditions) >= 2 for r in results[0::2])


def test_50_channels_concurrently(daemon, api):
    d = daemon()
    stubs = [api.grpc.RuntimeServiceStub(d.channel()) for _ in range(50)]
    futures = [stub.Version.future(api.pb2.VersionRequest(version="v1"), timeout=30)
               for _ in range(4) for stub in stubs]
    results = [f.result() for f in futures]
    assert len(results) == 200
    assert all(r.runtime_name == "tinycri" for r in results)


def test_idle_half_open_connection_does_not_block_others(daemon):
    """A client that stops halfway through its preface must not stall the loop."""
    d = daemon()
    s = unix_connect(d.socket)
    try:
        s.sendall(PREFACE[:10])
        assert_healthy(d)
        s2 = unix_connect(d.socket)
        try:
            s2.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, b"\x00"))
            assert_healthy(d)
        finally:
            s2.close()
    finally:
        s.close()


# --------------------------------------------------------------------------
# Clients that go away
# --------------------------------------------------------------------------

def test_client_disconnects_mid_frame(daemon):
    d = daemon()
    for _ in range(3):
        s = unix_connect(d.socket)
        # A HEADERS frame that announces 100 bytes and sends 10.
        s.sendall(PREFACE + frame(SETTINGS, 0, 0)
                  + struct.pack(">I", 100)[1:] + struct.pack(">BBI", HEADERS, END_HEADERS, 1)
                  + b"\x00" * 10)
        s.close()
    s = unix_connect(d.socket)
    s.sendall(PREFACE[:5])
    s.close()
    assert_healthy(d)


def test_client_disconnects_mid_message(daemon, api):
    """Headers and half a gRPC message, then the client is gone."""
    d = daemon()
    msg = api.pb2.VersionRequest(version="v" * 1000).SerializeToString()
    body = grpc_message(msg)
    s = unix_connect(d.socket)
    s.sendall(PREFACE + frame(SETTINGS, 0, 0)
              + frame(HEADERS, END_HEADERS, 1, grpc_headers(VERSION))
              + frame(DATA, 0, 1, body[:300]))
    s.close()
    assert_healthy(d)


def test_client_resets_stream_and_leaves(daemon, api):
    d = daemon()
    s = unix_connect(d.socket)
    s.sendall(PREFACE + frame(SETTINGS, 0, 0)
              + frame(HEADERS, END_HEADERS, 1, grpc_headers(VERSION))
              + frame(RST_STREAM, 0, 1, struct.pack(">I", 8))  # CANCEL
              + frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
    s.close()
    assert_healthy(d)


def test_grpc_call_with_short_deadline_then_channel_closed(daemon, api):
    d = daemon()
    ch = d.channel()
    stub = api.grpc.RuntimeServiceStub(ch)
    stub.Version(api.pb2.VersionRequest(), timeout=RPC_TIMEOUT)  # connection is up
    big = api.pb2.VersionRequest(version="x" * (8 * MiB))
    futures = [stub.Version.future(big, timeout=0.001) for _ in range(5)]
    futures += [stub.Status.future(api.pb2.StatusRequest(verbose=True), timeout=0.001)
                for _ in range(5)]
    for f in futures:
        try:
            f.result()
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.details()
    # Calls in flight when the channel goes away.
    pending = [stub.Version.future(big, timeout=RPC_TIMEOUT) for _ in range(5)]
    ch.close()
    for f in pending:
        try:
            f.result()
        except grpc.RpcError:
            pass
    assert_healthy(d)


def connect_retrying(path, timeout=5.0):
    """Connect; while the listen backlog is full (EAGAIN on AF_UNIX), wait for the daemon."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return unix_connect(path)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.002)


def test_connection_churn_leaks_no_fds(daemon, api):
    """300 connections (more than max_connections) that come and go in different ways."""
    d = daemon()
    assert_healthy(d)
    d.close_channels()
    before = fd_count(d.pid)
    body = grpc_message(api.pb2.VersionRequest(version="v1").SerializeToString())
    for i in range(300):
        s = connect_retrying(d.socket)
        kind = i % 3
        if kind == 1:
            s.sendall(PREFACE + frame(SETTINGS, 0, 0))
        elif kind == 2:
            s.sendall(PREFACE + frame(SETTINGS, 0, 0)
                      + frame(HEADERS, END_HEADERS, 1, grpc_headers(VERSION))
                      + frame(DATA, END_STREAM, 1, body))
        s.close()
    # The daemon reaps each closed connection on a later loop turn; until then they
    # count against max_connections, so wait for the fds before checking service.
    wait_until(lambda: fd_count(d.pid) <= before, timeout=10,
               what=lambda: "fd count back to %d (now %d)" % (before, fd_count(d.pid)))
    assert_healthy(d)
