# SPDX-License-Identifier: Apache-2.0
"""The streaming server: Exec, Attach and PortForward URLs served by tinycrid over
SPDY/3.1 and WebSocket, driven by crictl (client-go's SPDY client, as kubelet and
kubectl use it), by a raw SPDY client (spdyclient.py) for the edges, and by
python3-websocket.

Containers come from the `ctrs` fixture of test_containers.py (pods on the
tc-ctr0 bridge, the busybox image from the local registry, runc by default).
"""
import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import time

import grpc
import pytest

from conftest import wait_until
from test_containers import Ctrs, ctrs, pod_network, rss_anon_kib, is_sanitized, SLEEP  # noqa: F401
import spdyclient

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

CRICTL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "tools",
                      "crictl")
MiB = 1 << 20


def crictl_path():
    for p in (os.environ.get("CRICTL"), CRICTL, "/work/shared/tools/crictl"):
        if p and os.path.isfile(p) and os.access(p, os.X_OK):
            return os.path.abspath(p)
    pytest.skip("crictl not found (set CRICTL)")


def crictl(ctrs, *args, input=None, timeout=60, check=False):
    sock = "unix://" + ctrs.d.socket
    argv = [crictl_path(), "--runtime-endpoint", sock, "--image-endpoint", sock,
            "--timeout", "30s"] + list(args)
    return subprocess.run(argv, input=input, capture_output=True, timeout=timeout, check=check)


def running(ctrs, name="s", **kw):
    pod = ctrs.run_pod(name)
    kw.setdefault("command", SLEEP)
    return pod, ctrs.run(pod, "c", **kw)


# --------------------------------------------------------------------------
# crictl exec
# --------------------------------------------------------------------------

def test_crictl_exec_streams_and_exit_code(ctrs):
    _, cid = running(ctrs, "ex")
    r = crictl(ctrs, "exec", cid, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.stdout == b"out\n"
    # stderr separately; then crictl's own line: client-go decoded the exit code from the
    # v4 status (crictl 1.26 itself exits 1 for any failure).
    assert r.stderr.startswith(b"err\n")
    assert b"command terminated with exit code 3" in r.stderr
    assert r.returncode == 1
    r = crictl(ctrs, "exec", cid, "echo", "hello")
    assert (r.returncode, r.stdout) == (0, b"hello\n")


def test_crictl_exec_large_output_is_not_truncated(ctrs):
    _, cid = running(ctrs, "big")
    want = "".join("%d\n" % i for i in range(1, 200001)).encode()  # 1.3 MB
    r = crictl(ctrs, "exec", cid, "seq", "1", "200000")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) == len(want) and r.stdout == want


def test_crictl_exec_tty_interactive(ctrs):
    """crictl exec -it under a pty (util-linux script): typed input reaches the shell in
    the container, its output comes back, and exit ends the session."""
    _, cid = running(ctrs, "tty")
    sock = "unix://" + ctrs.d.socket
    cmd = "%s --runtime-endpoint %s --image-endpoint %s exec -it %s sh" % (
        crictl_path(), sock, sock, cid)
    p = subprocess.Popen(["script", "-qfec", cmd, "/dev/null"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = bytearray()
    done = threading.Event()

    def reader():
        while True:
            chunk = p.stdout.read1(65536)
            if not chunk:
                break
            out.extend(chunk)
        done.set()
    t = threading.Thread(target=reader)
    t.start()
    try:
        p.stdin.write(b"echo tty-$((40+2)); tty\n")
        p.stdin.flush()
        wait_until(lambda: b"tty-42" in out and b"/dev/pts/" in out, 20,
                   what=lambda: "the shell's answer in %r" % bytes(out))
        p.stdin.write(b"exit 0\n")
        p.stdin.flush()
        assert done.wait(20), bytes(out)
        assert p.wait(10) == 0, bytes(out)
    finally:
        if p.poll() is None:
            p.kill()
        t.join()
    # The shell ran under the container's terminal, which the session relayed.
    assert b"/ # " in out, bytes(out)


def create_with(ctrs, pod, name, **fields):
    """CreateContainer with ContainerConfig fields Ctrs.config() has no argument for."""
    extra = {k: fields.pop(k) for k in ("stdin", "stdin_once", "tty") if k in fields}
    cfg = ctrs.config(name, **fields)
    for k, v in extra.items():
        setattr(cfg, k, v)
    resp = ctrs.rt.CreateContainer(ctrs.pb.CreateContainerRequest(
        pod_sandbox_id=pod, config=cfg, sandbox_config=ctrs.pods[pod]), timeout=60)
    ctrs.start(resp.container_id)
    return resp.container_id


def test_crictl_attach_stdin_once(ctrs):
    """A container with stdin and stdin_once runs sh: crictl attach -i writes a command,
    reads its output, closes stdin; the shell exits and the attach ends with success."""
    pod = ctrs.run_pod("att")
    cid = create_with(ctrs, pod, "c", command=["sh"], stdin=True, stdin_once=True)
    sock = "unix://" + ctrs.d.socket
    p = subprocess.Popen([crictl_path(), "--runtime-endpoint", sock, "--image-endpoint", sock,
                          "attach", "-i", cid], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"echo -n hello\n")
        p.stdin.flush()
        got = b""
        deadline = time.monotonic() + 20
        while b"hello" not in got and time.monotonic() < deadline:
            chunk = p.stdout.read1(100)
            if not chunk:
                break
            got += chunk
        assert got == b"hello"
        p.stdin.close()
        rc = p.wait(20)
        assert rc == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
    st = ctrs.wait_exited(cid)
    assert st.exit_code == 0
    # The output went to the CRI log too.
    with open(ctrs.log_path("att", "c")) as f:
        assert re.search(r" stdout [PF] hello$", f.read(), re.M)


# --------------------------------------------------------------------------
# crictl port-forward
# --------------------------------------------------------------------------

HTTPD = ["sh", "-c", "mkdir -p /www && echo hello-from-httpd > /www/index.html && "
         "head -c %d /dev/urandom > /www/big && exec httpd -f -p %s -h /www"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PortForward:
    """crictl port-forward POD LOCAL:REMOTE in the background."""

    def __init__(self, ctrs, pod, remote):
        self.local = free_port()
        sock = "unix://" + ctrs.d.socket
        self.p = subprocess.Popen([crictl_path(), "--runtime-endpoint", sock, "--image-endpoint",
                                   sock, "port-forward", pod, "%d:%d" % (self.local, remote)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_until(self.listening, 20, what="crictl port-forward to listen")

    def listening(self):
        assert self.p.poll() is None, self.p.stdout.read()
        try:
            socket.create_connection(("127.0.0.1", self.local), timeout=1).close()
            return True
        except OSError:
            return False

    def get(self, path, timeout=60):
        s = socket.create_connection(("127.0.0.1", self.local), timeout=timeout)
        s.sendall(b"GET %s HTTP/1.0\r\n\r\n" % path.encode())
        data = bytearray()
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data.extend(chunk)
        s.close()
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        return head, body

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()


def test_crictl_port_forward_pod_network(ctrs):
    """port-forward to busybox httpd in a pod on the bridge: several connections at once,
    and 100 MiB intact."""
    size = 100 * MiB
    pod = ctrs.run_pod("pf")
    cid = ctrs.run(pod, "web", command=[HTTPD[0], HTTPD[1], HTTPD[2] % (size, "8080")])
    wait_until(lambda: ctrs.exec(cid, "sh", "-c", "test -s /www/big && netstat -ltn | "
                                 "grep -q :8080").exit_code == 0, 30, what="httpd to listen")
    want = ctrs.out(cid, "sha256sum", "/www/big").split()[0]
    pf = PortForward(ctrs, pod, 8080)
    try:
        results = [None] * 6

        def fetch(i):
            results[i] = pf.get("/index.html")
        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for head, body in results:
            assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head
            assert body == b"hello-from-httpd\n"
        head, body = pf.get("/big", timeout=120)
        assert len(body) == size
        assert hashlib.sha256(body).hexdigest() == want
    finally:
        pf.stop()


def test_crictl_port_forward_host_network(ctrs):
    pb = ctrs.pb
    port = free_port()
    cfg = ctrs.pod_config("pfhost")
    cfg.linux.security_context.namespace_options.network = pb.NODE
    pod = ctrs.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=60).pod_sandbox_id
    ctrs.pods = getattr(ctrs, "pods", {})
    ctrs.pods[pod] = cfg
    ns = pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD)
    ctrs.run(pod, "web", command=[HTTPD[0], HTTPD[1], HTTPD[2] % (1024, "127.0.0.1:%d" % port)],
             namespace_options=ns)
    wait_until(lambda: _port_open(port), 30, what="httpd on the host's loopback")
    pf = PortForward(ctrs, pod, port)
    try:
        head, body = pf.get("/index.html")
        assert body == b"hello-from-httpd\n"
    finally:
        pf.stop()


def _port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
