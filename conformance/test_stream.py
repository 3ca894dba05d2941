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


# --------------------------------------------------------------------------
# RPC validation and Status
# --------------------------------------------------------------------------

def rpc_code(fn, req):
    with pytest.raises(grpc.RpcError) as ei:
        fn(req, timeout=10)
    return ei.value.code()


def test_rpc_validation_and_status(ctrs):
    pb, rt = ctrs.pb, ctrs.rt
    pod, cid = running(ctrs, "val")
    bad = grpc.StatusCode.INVALID_ARGUMENT
    assert rpc_code(rt.Exec, pb.ExecRequest(cmd=["true"], stdout=True)) == bad
    assert rpc_code(rt.Exec, pb.ExecRequest(container_id=cid, stdout=True)) == bad
    assert rpc_code(rt.Exec, pb.ExecRequest(container_id=cid, cmd=["sh"], tty=True,
                                            stdout=True, stderr=True)) == bad
    assert rpc_code(rt.Exec, pb.ExecRequest(container_id=cid, cmd=["sh"])) == bad
    assert rpc_code(rt.Exec, pb.ExecRequest(container_id="f" * 64, cmd=["sh"],
                                            stdout=True)) == grpc.StatusCode.NOT_FOUND
    assert rpc_code(rt.Attach, pb.AttachRequest(stdout=True)) == bad
    assert rpc_code(rt.Attach, pb.AttachRequest(container_id=cid, tty=True, stdout=True,
                                                stderr=True)) == bad
    assert rpc_code(rt.Attach, pb.AttachRequest(container_id=cid)) == bad
    assert rpc_code(rt.PortForward, pb.PortForwardRequest(port=[80])) == bad
    assert rpc_code(rt.PortForward, pb.PortForwardRequest(pod_sandbox_id=pod,
                                                          port=[70000])) == bad
    assert rpc_code(rt.PortForward, pb.PortForwardRequest(
        pod_sandbox_id="f" * 64, port=[80])) == grpc.StatusCode.NOT_FOUND
    url = rt.Exec(pb.ExecRequest(container_id=cid, cmd=["true"], stdout=True), timeout=10).url
    base = json.loads(ctrs.d.status(verbose=True).info["streaming"])["url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base), base
    assert re.fullmatch(re.escape(base) + r"/exec/[A-Za-z0-9_-]{8}", url), url
    url = rt.Attach(pb.AttachRequest(container_id=cid, stdout=True), timeout=10).url
    assert re.fullmatch(re.escape(base) + r"/attach/[A-Za-z0-9_-]{8}", url), url
    url = rt.PortForward(pb.PortForwardRequest(pod_sandbox_id=pod, port=[80]), timeout=10).url
    assert re.fullmatch(re.escape(base) + r"/portforward/[A-Za-z0-9_-]{8}", url), url


# --------------------------------------------------------------------------
# Raw SPDY: HTTP answers, tokens, the protocol's edges
# --------------------------------------------------------------------------

def exec_url(ctrs, cid, cmd, stdin=False, stdout=True, stderr=True, tty=False):
    return ctrs.rt.Exec(ctrs.pb.ExecRequest(container_id=cid, cmd=cmd, stdin=stdin,
                                            stdout=stdout, stderr=stderr, tty=tty),
                        timeout=10).url


def refused(url, **kw):
    with pytest.raises(spdyclient.Refused) as ei:
        spdyclient.Client.connect(url, **kw)
    return ei.value


def test_http_answers_and_one_shot_tokens(ctrs):
    _, cid = running(ctrs, "http")
    url = exec_url(ctrs, cid, ["true"])
    base, token = url.rsplit("/", 1)
    # Unknown tokens and other paths: 404 (and the real token stays unused).
    assert refused(base + "/AAAAAAAA").status == 404
    assert refused(url.replace("/exec/", "/nothing/")).status == 404
    assert refused(url, method="PUT").status == 405
    # No protocol header: 400 (the token is used up by then, as kubelet's cache does).
    assert refused(url, protocols=[]).status == 400
    assert refused(url).status == 404
    # Only protocols we do not speak: 403 listing what we accept.
    e = refused(exec_url(ctrs, cid, ["true"]), protocols=["v5.channel.k8s.io"])
    assert e.status == 403
    accepted = [v for k, v in e.headers if k.lower() == "x-accepted-stream-protocol-versions"]
    assert accepted == spdyclient.EXEC_PROTOCOLS
    # Comma-separated offers work like repeated headers.
    c = spdyclient.Client.connect(exec_url(ctrs, cid, ["true"]),
                                  protocols=["v5.channel.k8s.io, v2.channel.k8s.io"])
    assert c.protocol == "v2.channel.k8s.io"
    c.close()
    # Not an upgrade: 400.
    s, status, _, _ = spdyclient.http_request(exec_url(ctrs, cid, ["true"]), [
        ("X-Stream-Protocol-Version", "v4.channel.k8s.io")])
    s.close()
    assert status == 400
    # A token used at another kind's path: 404, and used up.
    url = exec_url(ctrs, cid, ["true"])
    assert refused(url.replace("/exec/", "/attach/")).status == 404
    assert refused(url).status == 404
    # GET works as POST; a used token is gone.
    url = exec_url(ctrs, cid, ["echo", "hi"], stderr=False)
    c, ids = spdyclient.exec_session(url, stderr=False)
    c.until(lambda c: ids["error"] in c.fin and ids["stdout"] in c.fin)
    assert bytes(c.streams[ids["stdout"]]) == b"hi\n"
    assert json.loads(bytes(c.streams[ids["error"]])) == {"metadata": {}, "status": "Success"}
    c.close()
    assert refused(url).status == 404
    c = spdyclient.Client.connect(exec_url(ctrs, cid, ["true"]), method="GET")
    c.close()
    # A head that never ends is cut off, not buffered.
    s = socket.create_connection(urllib_host(base), timeout=10)
    s.sendall(b"GET /exec/AAAAAAAA HTTP/1.1\r\nX: " + b"a" * (64 * 1024))
    assert b" 431 " in s.recv(1024).split(b"\r\n")[0]
    s.close()


def urllib_host(url):
    import urllib.parse
    u = urllib.parse.urlsplit(url)
    return (u.hostname, u.port)


def restart_with(ctrs, stream):
    from test_containers import daemon_config
    ctrs.d.stop()
    ctrs.d.write_config(daemon_config(ctrs.images, {"stream": stream}))
    ctrs.d.start()


def test_token_expiry_limit_and_session_cap(ctrs):
    """token_timeout (here 1 s) expires URLs; at most 1000 wait; max_sessions (here 1)
    answers 429 with Retry-After and leaves the URL usable."""
    _, cid = running(ctrs, "tok")
    restart_with(ctrs, {"token_timeout": "1", "max_sessions": "1"})
    url = exec_url(ctrs, cid, ["true"])
    time.sleep(1.5)
    assert refused(url).status == 404
    # 1000 waiting URLs, then RESOURCE_EXHAUSTED.
    pb = ctrs.pb
    req = pb.ExecRequest(container_id=cid, cmd=["true"], stdout=True)
    futures = [ctrs.rt.Exec.future(req, timeout=30) for _ in range(1000)]
    assert all(f.result().url for f in futures)
    assert rpc_code(ctrs.rt.Exec, req) == grpc.StatusCode.RESOURCE_EXHAUSTED
    time.sleep(1.2)  # they expire; room again
    # One session open (a cat waiting for stdin): the next URL gets 429.
    a, ids = spdyclient.exec_session(exec_url(ctrs, cid, ["cat"], stdin=True, stderr=False),
                                     stdin=True, stderr=False)
    url = exec_url(ctrs, cid, ["echo", "later"], stderr=False)
    e = refused(url)
    assert e.status == 429
    assert ("Retry-After", "1") in e.headers
    a.data(ids["stdin"], b"", fin=True)
    a.until(lambda c: ids["error"] in c.fin)
    a.close()
    wait_until(lambda: _connect_ok(url), 5, what="the session slot to free up")


def _connect_ok(url):
    try:
        c, ids = spdyclient.exec_session(url, stderr=False)
    except spdyclient.Refused as e:
        assert e.status == 429
        return False
    c.until(lambda c: ids["stdout"] in c.fin)
    assert bytes(c.streams[ids["stdout"]]) == b"later\n"
    c.close()
    return True


def test_spdy_exec_stdin_ping_resize_and_status(ctrs):
    _, cid = running(ctrs, "raw")
    # stdin to a cat, back on stdout; PING echoed; stdin EOF ends the cat; v4 Success.
    c, ids = spdyclient.exec_session(exec_url(ctrs, cid, ["cat"], stdin=True), stdin=True)
    assert c.protocol == "v4.channel.k8s.io"
    c.ping(7)
    c.data(ids["stdin"], b"line one\n")
    c.until(lambda c: bytes(c.streams[ids["stdout"]]) == b"line one\n" and 7 in c.pings)
    c.data(ids["stdin"], b"", fin=True)
    c.until(lambda c: {ids["error"], ids["stdout"], ids["stderr"]} <= c.fin)
    assert ids["stdin"] in c.reset
    assert json.loads(bytes(c.streams[ids["error"]])) == {"metadata": {}, "status": "Success"}
    c.close()
    # A non-zero exit: v4 NonZeroExitCode with the code as cause.
    c, ids = spdyclient.exec_session(exec_url(ctrs, cid, ["sh", "-c", "exit 7"]))
    c.until(lambda c: ids["error"] in c.fin)
    st = json.loads(bytes(c.streams[ids["error"]]))
    assert st["status"] == "Failure" and st["reason"] == "NonZeroExitCode"
    assert st["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
    c.close()
    # v2: a plain-text error, failure only.
    c, ids = spdyclient.exec_session(exec_url(ctrs, cid, ["sh", "-c", "exit 7"]),
                                     protocols=["v2.channel.k8s.io"])
    assert c.protocol == "v2.channel.k8s.io"
    c.until(lambda c: ids["error"] in c.fin)
    assert bytes(c.streams[ids["error"]]).startswith(b"command terminated with non-zero exit")
    c.close()
    # A command that does not exist: the runtime's error, a failure status.
    c, ids = spdyclient.exec_session(exec_url(ctrs, cid, ["/no/such/cmd"]))
    c.until(lambda c: ids["error"] in c.fin)
    assert json.loads(bytes(c.streams[ids["error"]]))["status"] == "Failure"
    c.close()
    # tty with a resize stream: the size reaches the container's terminal.
    url = exec_url(ctrs, cid, ["sh", "-c", "sleep 1; stty size"], tty=True, stderr=False)
    c, ids = spdyclient.exec_session(url, tty=True, resize=True, stderr=False)
    c.data(ids["resize"], b'{"Width":123,"Height":45}\n')
    c.until(lambda c: ids["error"] in c.fin)
    assert bytes(c.streams[ids["stdout"]]).strip() == b"45 123"
    c.close()


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def leftovers(ctrs, cid, mark):
    ps = ctrs.out(cid, "ps", "-o", "pid,stat,args")
    return [line for line in ps.splitlines()[1:] if mark in line and "ps -o" not in line]


def test_client_that_never_reads_and_client_that_drops(ctrs):
    """A client that never reads: the process blocks on its output, the daemon's memory
    stays bounded. A client that drops mid-stream: the process tree is killed, no fd,
    process or memory is left in the daemon."""
    _, cid = running(ctrs, "slow")
    pid = ctrs.d.pid
    fds = fd_count(pid)
    rss0 = rss_anon_kib(pid)
    c, ids = spdyclient.exec_session(exec_url(ctrs, cid, ["sh", "-c", "cat /dev/zero; "
                                                          "echo 4242"]))
    peak = rss0
    for _ in range(30):
        time.sleep(0.1)
        peak = max(peak, rss_anon_kib(pid))
    print("tinycrid RssAnon with a client that never reads: %d -> %d KiB" % (rss0, peak))
    if not is_sanitized(ctrs.d.binary):
        assert peak - rss0 < 4 * 1024
    c.close()  # drops, with megabytes unread
    wait_until(lambda: not leftovers(ctrs, cid, "cat /dev/zero"), 15,
               what=lambda: "the exec to be gone: %s" % leftovers(ctrs, cid, "cat /dev/zero"))
    # Dropped while a process tree runs with stdin open.
    c, ids = spdyclient.exec_session(exec_url(ctrs, cid, ["sh", "-c", "sleep 4343 & sleep 4344"],
                                              stdin=True), stdin=True)
    wait_until(lambda: len(leftovers(ctrs, cid, "sleep 434")) == 2, 10,
               what="the exec's processes to run")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    wait_until(lambda: not leftovers(ctrs, cid, "sleep 434"), 15,
               what=lambda: "nothing left: %s" % leftovers(ctrs, cid, "sleep 434"))
    wait_until(lambda: fd_count(pid) <= fds, 10,
               what=lambda: "the daemon's fds to go back to %d (%d)" % (fds, fd_count(pid)))
    assert ctrs.state(cid) == ctrs.pb.CONTAINER_RUNNING


def test_hundred_concurrent_exec_sessions(ctrs):
    _, cid = running(ctrs, "many")
    pid = ctrs.d.pid
    fds = fd_count(pid)
    rss0 = rss_anon_kib(pid)
    sessions = []
    try:
        for i in range(100):
            url = exec_url(ctrs, cid, ["cat"], stdin=True, stderr=False)
            sessions.append(spdyclient.exec_session(url, stdin=True, stderr=False))
        for i, (c, ids) in enumerate(sessions):
            c.data(ids["stdin"], b"session %d\n" % i)
        for i, (c, ids) in enumerate(sessions):
            c.until(lambda c: bytes(c.streams[ids["stdout"]]) == b"session %d\n" % i)
        rss = rss_anon_kib(pid)
        print("tinycrid RssAnon: %d KiB idle, %d KiB with 100 exec sessions (%.1f KiB each)"
              % (rss0, rss, (rss - rss0) / 100.0))
        for c, ids in sessions:
            c.data(ids["stdin"], b"", fin=True)
        for c, ids in sessions:
            c.until(lambda c: ids["error"] in c.fin)
            assert json.loads(bytes(c.streams[ids["error"]]))["status"] == "Success"
    finally:
        for c, _ in sessions:
            c.close()
    wait_until(lambda: fd_count(pid) <= fds, 10,
               what=lambda: "the daemon's fds to go back to %d (%d)" % (fds, fd_count(pid)))


# --------------------------------------------------------------------------
# WebSocket (python3-websocket)
# --------------------------------------------------------------------------

def ws_connect(url, protocol):
    import websocket
    return websocket.create_connection(url.replace("http://", "ws://", 1), timeout=20,
                                       subprotocols=[protocol] if protocol else None)


def ws_messages(ws, until, base64=False):
    """(channel, data) messages until until(list) is true or the server closes."""
    import base64 as b64
    import websocket
    got = []
    while not until(got):
        try:
            op, data = ws.recv_data()
        except websocket.WebSocketConnectionClosedException:
            break
        if op == websocket.ABNF.OPCODE_CLOSE:
            break
        if base64:
            got.append((data[0] - ord("0"), b64.b64decode(data[1:])))
        else:
            got.append((data[0], data[1:]))
    return got


def channel(msgs, ch):
    return b"".join(d for c, d in msgs if c == ch)


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"])
def test_websocket_exec(ctrs, protocol):
    import websocket
    _, cid = running(ctrs, "ws")
    b64 = "base64" in protocol
    ws = ws_connect(exec_url(ctrs, cid, ["sh", "-c", "read x; echo got-$x; echo e >&2; exit 4"],
                             stdin=True), protocol)
    assert ws.getsubprotocol() == protocol
    msg = ("0" + __import__("base64").b64encode(b"hello\n").decode()) if b64 else b"\x00hello\n"
    ws.send(msg, opcode=websocket.ABNF.OPCODE_TEXT if b64 else websocket.ABNF.OPCODE_BINARY)
    msgs = ws_messages(ws, lambda m: channel(m, 3), base64=b64)
    ws.close()
    assert msgs[0] == (1, b"")  # the "ready" message on the first output channel
    assert channel(msgs, 1) == b"got-hello\n"
    assert channel(msgs, 2) == b"e\n"
    st = json.loads(channel(msgs, 3))
    assert st["reason"] == "NonZeroExitCode"
    assert st["details"]["causes"][0]["message"] == "4"


def test_websocket_port_forward(ctrs):
    import websocket
    pod = ctrs.run_pod("wspf")
    cid = ctrs.run(pod, "web", command=[HTTPD[0], HTTPD[1], HTTPD[2] % (1024, "8080")])
    wait_until(lambda: ctrs.exec(cid, "sh", "-c", "netstat -ltn | grep -q :8080").exit_code == 0,
               30, what="httpd to listen")
    url = ctrs.rt.PortForward(ctrs.pb.PortForwardRequest(pod_sandbox_id=pod, port=[8080, 9]),
                              timeout=10).url
    ws = ws_connect(url, "v4.channel.k8s.io")
    port_le = (8080).to_bytes(2, "little")
    ws.send(b"\x00GET /index.html HTTP/1.0\r\n\r\n", opcode=websocket.ABNF.OPCODE_BINARY)
    msgs = ws_messages(ws, lambda m: False)
    ws.close()
    # Each channel starts with its port; port 9 has nothing listening: its error channel says so.
    assert (0, port_le) in msgs and (1, port_le) in msgs
    assert (2, (9).to_bytes(2, "little")) in msgs and (3, (9).to_bytes(2, "little")) in msgs
    data = channel(msgs, 0)[2:]
    assert data.startswith(b"HTTP/1.") and data.endswith(b"hello-from-httpd\n")
    err = channel(msgs, 3)[2:].decode()
    assert err.startswith("error forwarding port 9 to pod %s, uid : " % pod), err


def test_spdy_port_forward_errors_and_pairs(ctrs):
    """portforward.k8s.io by hand: a bad port is reset, a port nobody listens on gets the
    error text, and pairs on one connection work at once."""
    pod = ctrs.run_pod("rawpf")
    cid = ctrs.run(pod, "web", command=[HTTPD[0], HTTPD[1], HTTPD[2] % (1024, "8080")])
    wait_until(lambda: ctrs.exec(cid, "sh", "-c", "netstat -ltn | grep -q :8080").exit_code == 0,
               30, what="httpd to listen")
    url = ctrs.rt.PortForward(ctrs.pb.PortForwardRequest(pod_sandbox_id=pod, port=[8080]),
                              timeout=10).url
    c = spdyclient.Client.connect(url, protocols=["portforward.k8s.io"])
    assert c.protocol == "portforward.k8s.io"
    bad = c.open({"streamtype": "error", "port": "0", "requestid": "0"})
    c.until(lambda c: bad in c.reset)
    bad = c.open({"streamtype": "nonsense", "port": "80", "requestid": "0"})
    c.until(lambda c: bad in c.reset)
    pairs = []
    for i, port in enumerate([8080, 8080, 1, 8080]):
        h = {"streamtype": "error", "port": str(port), "requestid": str(i + 1)}
        e = c.open(h)
        c.data(e, b"", fin=True)
        h["streamtype"] = "data"
        d = c.open(h)
        pairs.append((port, e, d))
    for port, e, d in pairs:
        if port == 8080:
            c.data(d, b"GET / HTTP/1.0\r\n\r\n")
    c.until(lambda c: all(e in c.fin for _, e, _ in pairs), timeout=30)
    for port, e, d in pairs:
        if port == 8080:
            assert bytes(c.streams[d]).endswith(b"hello-from-httpd\n")
            assert bytes(c.streams[e]) == b""
        else:
            assert bytes(c.streams[e]).decode().startswith(
                "error forwarding port 1 to pod %s, uid : " % pod)
    c.close()


# --------------------------------------------------------------------------
# The keeper's attach socket
# --------------------------------------------------------------------------

def test_attach_keeper_memory_and_output_fanout(ctrs):
    """Attach over raw SPDY while the container keeps printing: the output reaches the
    client and the log; the keeper stays small with a client attached."""
    from test_containers import keeper_pids
    pod = ctrs.run_pod("attmem")
    cid = ctrs.run(pod, "c", command=["sh", "-c", "i=0; while true; do i=$((i+1)); "
                                      "echo tick-$i; echo tock-$i >&2; sleep 0.05; done"])
    url = ctrs.rt.Attach(ctrs.pb.AttachRequest(container_id=cid, stdout=True, stderr=True),
                         timeout=10).url
    c = spdyclient.Client.connect(url)
    ids = {"error": c.open({"streamtype": "error"})}
    ids["stdout"] = c.open({"streamtype": "stdout"})
    ids["stderr"] = c.open({"streamtype": "stderr"})
    c.until(lambda c: b"tick-" in bytes(c.streams[ids["stdout"]]) and
            b"tock-" in bytes(c.streams[ids["stderr"]]))
    keeper = [p for p in keeper_pids(ctrs.d.state)]
    assert len(keeper) == 1
    rss = rss_anon_kib(keeper[0])
    print("keeper RssAnon with an attach client: %d KiB" % rss)
    if not is_sanitized(ctrs.d.binary):
        assert rss <= 128
    c.close()
    ctrs.stop(cid)
    with open(ctrs.log_path("attmem", "c")) as f:
        log = f.read()
    assert " stdout F tick-1\n" in log and " stderr F tock-1\n" in log


def test_attach_tty_resize_reaches_the_container(ctrs):
    """Attach to a tty container with a resize stream: the size goes through the keeper's
    control socket to the container's terminal, where the attached shell reads it back."""
    pod = ctrs.run_pod("attres")
    cid = create_with(ctrs, pod, "c", command=["sh"], stdin=True, tty=True)
    url = ctrs.rt.Attach(ctrs.pb.AttachRequest(container_id=cid, stdin=True, stdout=True,
                                               tty=True), timeout=10).url
    c, ids = spdyclient.exec_session(url, stdin=True, tty=True, resize=True, stderr=False)

    def shell_sees(rows, cols):
        # Nobody waits for the keeper's answer to a resize: ask the shell until it sees it.
        want = b"%d %d" % (rows, cols)
        c.data(ids["resize"], json.dumps({"Width": cols, "Height": rows}).encode() + b"\n")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            c.data(ids["stdin"], b"stty size\n")
            try:
                c.until(lambda c: want in bytes(c.streams[ids["stdout"]]), timeout=1)
                return True
            except TimeoutError:
                pass
        return False

    assert shell_sees(31, 97), bytes(c.streams[ids["stdout"]])
    assert shell_sees(24, 80), bytes(c.streams[ids["stdout"]])
    c.close()


def test_slow_attach_client_is_cut_off(ctrs):
    """A client on the keeper's attach socket that never reads: the container is not held
    up, everything reaches the log, and the client is cut off after a bounded backlog."""
    pod = ctrs.run_pod("attslow")
    cid = ctrs.run(pod, "c", command=["sh", "-c", "sleep 1; head -c 8000000 /dev/zero | "
                                      "tr '\\0' a | fold -w 100; echo done-marker; sleep 3600"])
    path = os.path.join(ctrs.info(cid)["bundle"], "attach.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(path)
    s.sendall(b"attach stdout\n")
    log_path = ctrs.log_path("attslow", "c")
    wait_until(lambda: "done-marker" in open(log_path).read(), 30,
               what="the container to finish writing (not blocked by the attach client)")
    got = 0
    s.settimeout(10)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += len(chunk)
    s.close()
    print("the slow attach client got %d bytes before it was cut off" % got)
    assert 0 < got < 4 * MiB
    assert ctrs.state(cid) == ctrs.pb.CONTAINER_RUNNING


def test_creation_and_idle_timeouts(ctrs):
    """creation_timeout bounds the request head and the stream set; idle_timeout closes a
    silent session, and its process goes with it."""
    _, cid = running(ctrs, "tmo")
    restart_with(ctrs, {"creation_timeout": "1", "idle_timeout": "2"})
    base = json.loads(ctrs.d.status(verbose=True).info["streaming"])["url"]
    t0 = time.monotonic()
    s = socket.create_connection(urllib_host(base), timeout=10)
    s.sendall(b"GET /exec/AAAAAAAA HTTP/1.1\r\n")  # never finished
    assert s.recv(1024) == b""
    s.close()
    assert time.monotonic() - t0 < 5
    # Only the error stream ever comes: the connection is dropped.
    c = spdyclient.Client.connect(exec_url(ctrs, cid, ["true"]))
    c.open({"streamtype": "error"})
    t0 = time.monotonic()
    c.read_to_eof(timeout=10)
    assert time.monotonic() - t0 < 5
    c.close()
    # A silent session with a process waiting on stdin.
    c, ids = spdyclient.exec_session(exec_url(ctrs, cid, ["sh", "-c", "cat; echo 4545"],
                                              stdin=True), stdin=True)
    wait_until(lambda: leftovers(ctrs, cid, "cat"), 10, what="the exec to run")
    t0 = time.monotonic()
    c.read_to_eof(timeout=15)
    assert 1.5 < time.monotonic() - t0 < 10
    c.close()
    wait_until(lambda: not leftovers(ctrs, cid, "4545"), 15,
               what=lambda: "nothing left: %s" % leftovers(ctrs, cid, "4545"))


# --------------------------------------------------------------------------
# HTTPS
# --------------------------------------------------------------------------

def self_signed(dirname):
    cert, key = os.path.join(dirname, "stream.crt"), os.path.join(dirname, "stream.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def maps_libssl(pid):
    with open("/proc/%d/maps" % pid) as f:
        return "libssl.so" in f.read()


def test_https_streaming(ctrs):
    """With tls_cert and tls_key the URLs are https:// and exec, large output and the
    SPDY edges work through TLS; crictl exec and port-forward too."""
    _, cid = running(ctrs, "tls")
    cert, key = self_signed(ctrs.d.tmp)
    restart_with(ctrs, {"tls_cert": cert, "tls_key": key})
    assert maps_libssl(ctrs.d.pid)
    url = exec_url(ctrs, cid, ["seq", "1", "200000"], stderr=False)
    assert url.startswith("https://127.0.0.1:")
    c, ids = spdyclient.exec_session(url, stderr=False)
    c.ping(3)
    c.until(lambda c: ids["error"] in c.fin and 3 in c.pings, timeout=30)
    assert bytes(c.streams[ids["stdout"]]) == "".join("%d\n" % i for i in range(1, 200001)).encode()
    c.close()
    r = crictl(ctrs, "exec", cid, "echo", "over-tls")
    assert (r.returncode, r.stdout) == (0, b"over-tls\n"), r.stderr
    # Plain HTTP to the TLS port gets no HTTP answer.
    s = socket.create_connection(urllib_host(url), timeout=10)
    s.sendall(b"GET /exec/AAAAAAAA HTTP/1.1\r\n\r\n")
    try:
        assert not s.recv(1024).startswith(b"HTTP/1.1")
    except ConnectionResetError:
        pass
    s.close()


def test_plain_http_does_not_load_tls(daemon):
    d = daemon()
    assert json.loads(d.status(verbose=True).info["streaming"])["url"].startswith("http://")
    assert not maps_libssl(d.pid)


def test_bad_tls_files_stop_start_up(daemon):
    d = daemon(start=False)
    d.write_config({"stream": {"tls_cert": "/nonexistent.crt", "tls_key": "/nonexistent.key"}})
    d.start(wait=False)
    assert d.wait_exit(15) == 1
    assert "tls_cert /nonexistent.crt" in d.stderr_text()
