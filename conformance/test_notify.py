# SPDX-License-Identifier: Apache-2.0
"""systemd readiness (Type=notify), with a fake $NOTIFY_SOCKET listener standing in for
systemd: READY=1 once the socket accepts calls, RELOADING=1 / READY=1 around SIGHUP,
STOPPING=1 on SIGTERM, STATUS= with the pod and container counts; path and abstract
sockets; a daemon whose $NOTIFY_SOCKET is unusable still serves. The variable is not
passed on: runc, for one, would otherwise wait for each container to report READY=1."""
import os
import signal
import socket
import time

import grpc
import pytest

from conftest import channel_options, wait_until
from test_containers import SLEEP, ctrs, keeper_pids, pod_network  # noqa: F401

READY_TIMEOUT = 15.0


class Listener:
    """A datagram socket where systemd's would be; keeps every message it got, in order."""

    def __init__(self, address):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)
        self.messages = []
        self.pos = 0  # messages before this one were matched by wait_for already

    def drain(self):
        while True:
            try:
                self.messages.append(self.sock.recv(8192).decode())
            except BlockingIOError:
                return self.messages

    def wait_for(self, predicate, timeout=READY_TIMEOUT, what="a notification"):
        """The next message, after the one the last wait_for returned, for which
        predicate is true."""

        def found():
            msgs = self.drain()
            for i in range(self.pos, len(msgs)):
                if predicate(msgs[i]):
                    self.pos = i + 1
                    return msgs[i]
            return None
        return wait_until(found, timeout, what=lambda: "%s; got %r" % (what, self.messages))

    def lines(self, key):
        """Every KEY=value line received, in order, as values."""
        return [line.split("=", 1)[1] for m in self.drain() for line in m.split("\n")
                if line.startswith(key + "=")]

    def close(self):
        self.sock.close()
        if not self.address.startswith("@"):
            try:
                os.unlink(self.address)
            except FileNotFoundError:
                pass


@pytest.fixture
def notify(monkeypatch, tmp_path):
    """A listener at a path; $NOTIFY_SOCKET points at it for daemons started in the test."""
    lst = Listener(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", lst.address)
    yield lst
    lst.close()


def version_now(d):
    """One Version call on a fresh connection, without waiting for the socket to appear."""
    ch = grpc.insecure_channel("unix:" + d.socket, options=channel_options())
    try:
        return d.api.grpc.RuntimeServiceStub(ch).Version(
            d.api.pb2.VersionRequest(version="v1"), timeout=5, wait_for_ready=False)
    finally:
        ch.close()


def test_ready_once_the_socket_serves(daemon, notify):
    d = daemon(start=False)
    d.start(wait=False)
    notify.wait_for(lambda m: "READY=1" in m.split("\n"), what="READY=1")
    # Nothing else to wait for: the first call after READY=1 is answered.
    assert version_now(d).runtime_name == "tinycri"
    status = notify.wait_for(lambda m: m.startswith("STATUS="), what="STATUS=")
    assert status == "STATUS=Serving CRI on %s: 0 pods (0 ready), 0 containers (0 running)" \
        % d.socket
    assert notify.lines("READY") == ["1"]
    assert "NOTIFY_SOCKET" not in d.stderr_text()  # a good value is not complained about


def test_abstract_socket(daemon, monkeypatch):
    lst = Listener("@tinycri-test-notify-%d" % os.getpid())
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", lst.address)
        d = daemon()
        lst.wait_for(lambda m: "READY=1" in m.split("\n"), what="READY=1")
        assert d.version().runtime_name == "tinycri"
    finally:
        lst.close()


def test_reload_is_bracketed(daemon, notify):
    d = daemon()
    notify.wait_for(lambda m: "READY=1" in m.split("\n"), what="READY=1")
    d.write_config({"server": {"log_level": "info"}})
    before_ns = time.monotonic_ns()
    d.send_signal(signal.SIGHUP)
    reloading = notify.wait_for(lambda m: "RELOADING=1" in m.split("\n"), what="RELOADING=1")
    usec = [line for line in reloading.split("\n") if line.startswith("MONOTONIC_USEC=")]
    assert len(usec) == 1, reloading
    # CLOCK_MONOTONIC, as systemd compares it with its own clock
    assert before_ns // 1000 <= int(usec[0].split("=")[1]) <= time.monotonic_ns() // 1000
    notify.wait_for(lambda m: "READY=1" in m.split("\n"), what="READY=1 after the reload")
    # READY=1 comes after the reload is done: the new log level is in effect.
    assert "configuration reloaded" in d.stderr_text()
    seq = [line for m in notify.drain() for line in m.split("\n")
           if line in ("READY=1", "RELOADING=1")]
    assert seq == ["READY=1", "RELOADING=1", "READY=1"]
    assert d.version().runtime_name == "tinycri"


def test_reload_with_a_bad_file_still_reports_ready(daemon, notify):
    d = daemon()
    notify.wait_for(lambda m: "READY=1" in m.split("\n"), what="READY=1")
    d.write_config(text="[server]\nno_such_key = 1\n")
    d.send_signal(signal.SIGHUP)
    notify.wait_for(lambda m: "RELOADING=1" in m.split("\n"), what="RELOADING=1")
    notify.wait_for(lambda m: "READY=1" in m.split("\n"), what="READY=1 after a failed reload")
    assert "reload failed" in d.stderr_text()
    assert d.version().runtime_name == "tinycri"


def test_stopping_on_sigterm(daemon, notify):
    d = daemon()
    notify.wait_for(lambda m: "READY=1" in m.split("\n"), what="READY=1")
    d.send_signal(signal.SIGTERM)
    stopping = notify.wait_for(lambda m: "STOPPING=1" in m.split("\n"), what="STOPPING=1")
    assert "STATUS=Stopping (Terminated)" in stopping
    assert d.wait_exit() == 0


@pytest.mark.parametrize("value", ["relative/notify.sock", "vsock:2:9999", "/nonexistent/dir/sock"])
def test_unusable_notify_socket_still_serves(daemon, monkeypatch, value):
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    d = daemon()
    assert d.version().runtime_name == "tinycri"
    err = d.stderr_text()
    if value.startswith("/"):
        assert "cannot notify systemd" in err
    else:
        assert "NOTIFY_SOCKET is not a unix socket path" in err
    assert d.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")
def test_status_counts_and_runc_under_notify(notify, ctrs):
    """Pods and containers show in STATUS=; with $NOTIFY_SOCKET set for the daemon, a runc
    container still starts (runc start would wait for the container's own READY=1 if the
    variable reached it), and no keeper has it in its environment."""
    d = ctrs.d
    serving = "STATUS=Serving CRI on %s: " % d.socket
    notify.wait_for(lambda m: m == serving + "0 pods (0 ready), 0 containers (0 running)",
                    what="STATUS with nothing")
    pod = ctrs.run_pod("notify")
    notify.wait_for(lambda m: m == serving + "1 pods (1 ready), 0 containers (0 running)",
                    what="STATUS with one pod")
    cid = ctrs.create(pod, "c", command=SLEEP)
    started = time.monotonic()
    ctrs.rt.StartContainer(ctrs.pb.StartContainerRequest(container_id=cid), timeout=20)
    assert time.monotonic() - started < 10
    assert ctrs.state(cid) == ctrs.pb.CONTAINER_RUNNING
    notify.wait_for(lambda m: m == serving + "1 pods (1 ready), 1 containers (1 running)",
                    what="STATUS with one running container")
    keepers = keeper_pids(d.state)
    assert keepers
    for pid in keepers:
        with open("/proc/%d/environ" % pid, "rb") as f:
            assert b"NOTIFY_SOCKET=" not in f.read()
    assert "NOTIFY_SOCKET" not in ctrs.out(cid, "env")
    ctrs.stop(cid)
    ctrs.rt.StopPodSandbox(ctrs.pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    notify.wait_for(lambda m: m == serving + "1 pods (0 ready), 1 containers (0 running)",
                    what="STATUS with a stopped pod")
