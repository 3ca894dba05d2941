# SPDX-License-Identifier: Apache-2.0
"""tinycrid through grpc-go, the gRPC stack kubelet and crictl use.

The client is tinycri-goclient (conformance/goclient/*.go, built by scripts/test
with scripts/lib.sh's build_goclient into build/; $TINYCRI_GOCLIENT names another
copy). It dials as kubelet does (the socket path is the target, so grpc-go sends
it as :authority; 16 MiB receive limit) and calls through the stubs protoc-gen-go
generated from proto/api.proto. Tests drive it in session mode: JSON commands on
its stdin, all on one long-lived ClientConn, one JSON result per command
(conformance/goclient/session.go says what they are).

What is checked, with kubelet's habits: every RPC tinycrid builds and the answers
a user would see; UNIMPLEMENTED for every RPC it does not; 200 concurrent calls on
one connection; a cancelled call and an exceeded deadline (and no process left
behind by an abandoned ExecSync); a reply over 4 MiB with the raised receive limit
and RESOURCE_EXHAUSTED at grpc-go's default 4 MiB; keepalive pings over an idle
connection without a GOAWAY; and the same ClientConn reconnecting after the daemon
restarts (SIGTERM, then kill -9).
"""
import base64
import json
import os
import select
import signal
import subprocess
import threading
import time

import pytest
from google.protobuf import json_format

from conftest import REPO, wait_until
from test_containers import SLEEP, ctrs, pod_network  # noqa: F401 (fixtures)
from test_runtime import unbuilt_methods

KiB = 1024
MiB = 1024 * KiB
STATUS_TIMEOUT = 2.0   # kubelet's deadline for status calls
PULL_TIMEOUT = 240.0   # kubelet's deadline for PullImage (4 minutes)
CALL_TIMEOUT = 60.0    # pods and containers (runtime and CNI work)
GRPC_DEFAULT_MAX_RECV = 4 * MiB
GOAWAY_ENHANCE_YOUR_CALM = 0xb


def goclient_path():
    return os.environ.get("TINYCRI_GOCLIENT") or os.path.join(REPO, "build", "tinycri-goclient")


@pytest.fixture(scope="session")
def goclient_bin():
    path = goclient_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("the Go gRPC client is not built: %s is missing. Build it with "
                    "`. scripts/lib.sh; build_goclient build` (scripts/test does), or point "
                    "TINYCRI_GOCLIENT at a built tinycri-goclient" % path, pytrace=False)
    return path


class Result:
    """One call's result as the Go client saw it."""

    def __init__(self, raw):
        if raw.get("error"):
            pytest.fail("tinycri-goclient could not make the call: %s" % raw["error"],
                        pytrace=False)
        self.raw = raw
        self.method = raw["method"]
        self.code = raw["code"]
        self.message = raw["message"]
        self.reply = raw.get("reply")
        self.replies = raw.get("replies") or []
        self.reply_size = raw["reply_size"]
        self.elapsed = raw["elapsed"]

    def __repr__(self):
        return "<%s: %s %r>" % (self.method, self.code, self.message)

    def ok(self):
        assert self.code == "OK", "%s: %s %s" % (self.method, self.code, self.message)
        return self.reply

    def msg(self, cls):
        """The reply as a Python protobuf message (checks the call succeeded)."""
        return json_format.ParseDict(self.ok(), cls())


def as_dict(req):
    if req is None:
        return {}
    if isinstance(req, dict):
        return req
    return json_format.MessageToDict(req, preserving_proto_field_name=True)


class GoSession:
    """A tinycri-goclient session: one process, one grpc-go ClientConn."""

    def __init__(self, binary, socket, *flags):
        self.argv = [binary, "-socket", socket] + list(flags) + ["session"]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0)
        self._buf = b""

    def _send(self, cmd, wait):
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + wait
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("tinycri-goclient gave no answer to %s within %.0fs"
                            % (cmd.get("op", cmd.get("method")), wait), pytrace=False)
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    pytest.fail("tinycri-goclient exited (%s); stderr:\n%s"
                                % (self.proc.wait(), self.proc.stderr.read().decode()),
                                pytrace=False)
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    @staticmethod
    def spec(method, request=None, timeout=STATUS_TIMEOUT, **kw):
        s = {"method": method, "request": as_dict(request), "timeout": timeout}
        s.update(kw)
        return s

    def call(self, method, request=None, timeout=STATUS_TIMEOUT, **kw):
        """One call on the session's connection; kw: cancel_after, max_recv, omit_reply."""
        spec = self.spec(method, request, timeout, **kw)
        return Result(self._send(dict(spec, op="call"), timeout + 30))

    def concurrent(self, specs, wait=120):
        out = self._send({"op": "concurrent", "calls": specs}, wait)
        return [Result(r) for r in out["results"]], out["elapsed"]

    def stats(self):
        return self._send({"op": "stats"}, 10)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode


@pytest.fixture
def go(goclient_bin):
    """Factory: go(daemon, *flags) -> a GoSession on the daemon's socket; closed at teardown."""
    sessions = []

    def make(d, *flags):
        s = GoSession(goclient_bin, d.socket, *flags)
        sessions.append(s)
        return s

    yield make
    bad = []
    for s in sessions:
        rc = s.close()
        if rc != 0:
            bad.append("tinycri-goclient %s exited with status %s" % (" ".join(s.argv), rc))
    if bad:
        pytest.fail("; ".join(bad), pytrace=False)


def b64(data):
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text or "")


def call_in_background(g, method, request, **kw):
    """Start g.call(...) in a thread; returns a function giving its Result."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", g.call(method, request, **kw)))
    t.start()

    def result():
        t.join(kw.get("timeout", STATUS_TIMEOUT) + 60)
        assert "r" in out, "the background %s call never finished" % method
        return out["r"]
    return result


def procs_with_args(*argv):
    """Pids whose command line is exactly argv."""
    want = b"\0".join(a.encode() for a in argv) + b"\0"
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    if f.read() == want:
                        out.append(int(entry))
            except OSError:
                pass
    return out


# --------------------------------------------------------------------------
# The client itself
# --------------------------------------------------------------------------

def test_goclient_stubs_cover_the_schema(goclient_bin, api):
    """The Go stubs are generated from proto/api.proto: same services, same methods."""
    out = subprocess.run([goclient_bin, "methods"], check=True, capture_output=True,
                         text=True).stdout.split()
    assert sorted(out) == sorted("%s/%s" % (s.name, m.name) for s, m in api.methods())


def test_one_shot_call_mode(daemon, goclient_bin):
    d = daemon()
    r = subprocess.run([goclient_bin, "-socket", d.socket, "-timeout", "2s", "call", "Version",
                        '{"version": "v1"}'], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    res = Result(json.loads(r.stdout))
    assert res.ok()["runtime_name"] == "tinycri"
    assert res.reply == json_format.MessageToDict(d.version(), preserving_proto_field_name=True,
                                                  including_default_value_fields=True)


# --------------------------------------------------------------------------
# Every RPC tinycrid builds
# --------------------------------------------------------------------------

def test_runtime_info_rpcs(daemon, go, api):
    pb = api.pb2
    d = daemon()
    g = go(d)
    v = g.call("Version", {"version": "v1"}).msg(pb.VersionResponse)
    assert (v.runtime_name, v.runtime_api_version) == ("tinycri", "v1")
    assert v.version and v.runtime_version

    st = g.call("Status", {"verbose": True}).msg(pb.StatusResponse)
    conds = {c.type: c for c in st.status.conditions}
    assert conds["RuntimeReady"].status is True
    # No CNI config in the fresh conf dir: the network is not ready, and says why.
    assert conds["NetworkReady"].status is False and conds["NetworkReady"].reason
    assert "config" in st.info and json.loads(st.info["config"])
    assert not g.call("Status").msg(pb.StatusResponse).info  # not verbose: no info

    rc = g.call("RuntimeConfig").msg(pb.RuntimeConfigResponse)
    assert rc.linux.cgroup_driver in (pb.SYSTEMD, pb.CGROUPFS)

    cidr = "10.77.0.0/16"
    assert g.call("UpdateRuntimeConfig", pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr=cidr)))).ok() == {}
    st = g.call("Status", {"verbose": True}).msg(pb.StatusResponse)
    assert json.loads(st.info["cni"])["podCIDR"] == cidr
    assert g.stats()["dials"] == 1


def test_unbuilt_rpcs_are_unimplemented(daemon, go):
    """Every RPC not built answers UNIMPLEMENTED with a message, server-streaming ones
    too, and the connection stays usable between them."""
    d = daemon()
    g = go(d)
    unbuilt = unbuilt_methods()
    assert unbuilt
    for service, method in unbuilt:
        r = g.call("%s/%s" % (service, method))
        assert r.code == "UNIMPLEMENTED", r
        assert r.message == "not implemented yet: %s" % method
        assert r.reply is None and r.replies == []
    assert g.call("Version").ok()["runtime_name"] == "tinycri"
    assert g.stats()["dials"] == 1


def test_image_rpcs(daemon, go, api, pushed_images):
    pb = api.pb2
    d = daemon(config={"registry." + pushed_images.host: {"insecure": "true"}})
    g = go(d)
    img = pushed_images["busybox"]
    ref = pushed_images.ref("busybox")

    assert g.call("ListImages").ok() == {"images": []}
    r = g.call("PullImage", pb.PullImageRequest(image=pb.ImageSpec(image=ref)),
               timeout=PULL_TIMEOUT)
    assert r.msg(pb.PullImageResponse).image_ref == img.id

    st = g.call("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=ref), verbose=True))
    im = st.msg(pb.ImageStatusResponse)
    assert im.image.id == img.id
    assert list(im.image.repo_tags) == [ref]
    assert list(im.image.repo_digests) == [pushed_images.digest_ref("busybox")]
    assert im.image.size > 0
    assert im.info, "verbose ImageStatus has no info"
    assert st.reply["image"]["size"] == str(im.image.size)  # jsonpb: uint64 as a string

    listed = g.call("ListImages").msg(pb.ListImagesResponse).images
    assert [i.id for i in listed] == [img.id]
    only = g.call("ListImages", pb.ListImagesRequest(
        filter=pb.ImageFilter(image=pb.ImageSpec(image=ref)))).msg(pb.ListImagesResponse)
    assert [i.id for i in only.images] == [img.id]

    fs = g.call("ImageFsInfo").msg(pb.ImageFsInfoResponse).image_filesystems
    assert fs and fs[0].fs_id.mountpoint.startswith(d.root)
    assert fs[0].used_bytes.value > 0 and fs[0].inodes_used.value > 0

    unknown = pushed_images.ref("never-pushed")
    r = g.call("PullImage", pb.PullImageRequest(image=pb.ImageSpec(image=unknown)),
               timeout=PULL_TIMEOUT)
    assert r.code == "NOT_FOUND" and "never-pushed" in r.message, r
    r = g.call("PullImage", pb.PullImageRequest(image=pb.ImageSpec(image="Bad Ref")))
    assert r.code == "INVALID_ARGUMENT", r

    assert g.call("RemoveImage", pb.RemoveImageRequest(image=pb.ImageSpec(image=ref))).ok() == {}
    gone = g.call("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)))
    assert gone.ok()["image"] is None  # no image: an empty reply, not NOT_FOUND
    assert g.call("ListImages").ok() == {"images": []}
    assert g.call("RemoveImage", pb.RemoveImageRequest(image=pb.ImageSpec(image=ref))).ok() == {}
    assert g.stats()["dials"] == 1


def test_pod_and_container_rpcs(ctrs, go):
    """A pod and a container through their whole lives, every call on one connection."""
    pb = ctrs.pb
    g = go(ctrs.d)

    cfg = ctrs.pod_config("gopod")
    pod = g.call("RunPodSandbox", pb.RunPodSandboxRequest(config=cfg), timeout=CALL_TIMEOUT)
    pod_id = pod.msg(pb.RunPodSandboxResponse).pod_sandbox_id
    ctrs.pods = {pod_id: cfg}  # the fixture removes what is left
    ps = g.call("PodSandboxStatus", {"pod_sandbox_id": pod_id}).msg(pb.PodSandboxStatusResponse)
    assert ps.status.state == pb.SANDBOX_READY
    assert ps.status.metadata.name == "gopod"
    assert ps.status.network.ip.startswith("10.90.")
    pods = g.call("ListPodSandbox", {"filter": {"id": pod_id}}).msg(pb.ListPodSandboxResponse)
    assert [p.id for p in pods.items] == [pod_id]

    ticker = ["sh", "-c", "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done"]
    ccfg = ctrs.config("goctr", command=ticker, labels={"app": "go"}, annotations={"a": "b"})
    r = g.call("CreateContainer", pb.CreateContainerRequest(
        pod_sandbox_id=pod_id, config=ccfg, sandbox_config=cfg), timeout=CALL_TIMEOUT)
    cid = r.msg(pb.CreateContainerResponse).container_id
    st = g.call("ContainerStatus", {"container_id": cid}).msg(pb.ContainerStatusResponse).status
    assert st.state == pb.CONTAINER_CREATED and st.metadata.name == "goctr"
    assert dict(st.labels) == {"app": "go"} and st.image_id == ctrs.image_id
    assert st.image_ref == "%s/busybox@%s" % (ctrs.images.host, ctrs.images["busybox"].digest)

    assert g.call("StartContainer", {"container_id": cid}, timeout=CALL_TIMEOUT).ok() == {}
    st = g.call("ContainerStatus", {"container_id": cid, "verbose": True})
    status = st.msg(pb.ContainerStatusResponse)
    assert status.status.state == pb.CONTAINER_RUNNING
    assert json.loads(status.info["info"])["pid"] > 0
    listed = g.call("ListContainers", {"filter": {"pod_sandbox_id": pod_id}})
    assert [c.id for c in listed.msg(pb.ListContainersResponse).containers] == [cid]
    running = g.call("ListContainers", {"filter": {"state": {"state": "CONTAINER_RUNNING"}}})
    assert [c["id"] for c in running.ok()["containers"]] == [cid]

    ex = g.call("ExecSync", {"container_id": cid, "cmd": ["sh", "-c", "echo out; echo err >&2; "
                                                          "hostname; exit 3"]},
                timeout=CALL_TIMEOUT).msg(pb.ExecSyncResponse)
    assert (ex.stdout, ex.stderr, ex.exit_code) == (b"out\ngopod\n", b"err\n", 3)
    big = g.call("ExecSync", {"container_id": cid, "cmd": ["head", "-c", str(5 * MiB),
                                                           "/dev/zero"]}, timeout=CALL_TIMEOUT)
    assert big.code == "OK" and big.reply_size > 5 * MiB  # over grpc-go's default 4 MiB
    assert unb64(big.reply["stdout"]) == b"\0" * (5 * MiB)

    path = ctrs.log_path("gopod", "goctr")
    wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 10,
               what="the first log lines")
    os.rename(path, path + ".1")
    assert g.call("ReopenContainerLog", {"container_id": cid}).ok() == {}
    wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 10,
               what="lines in the reopened log")

    assert g.call("StopContainer", {"container_id": cid, "timeout": 0},
                  timeout=CALL_TIMEOUT).ok() == {}
    st = g.call("ContainerStatus", {"container_id": cid}).msg(pb.ContainerStatusResponse).status
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 137
    r = g.call("ReopenContainerLog", {"container_id": cid})
    assert r.code == "FAILED_PRECONDITION", r
    r = g.call("ExecSync", {"container_id": cid, "cmd": ["true"]})
    assert r.code == "FAILED_PRECONDITION", r
    assert g.call("RemoveContainer", {"container_id": cid}, timeout=CALL_TIMEOUT).ok() == {}
    r = g.call("ContainerStatus", {"container_id": cid})
    assert r.code == "NOT_FOUND" and cid in r.message, r
    assert g.call("ListContainers").ok() == {"containers": []}

    assert g.call("StopPodSandbox", {"pod_sandbox_id": pod_id}, timeout=CALL_TIMEOUT).ok() == {}
    ps = g.call("PodSandboxStatus", {"pod_sandbox_id": pod_id}).msg(pb.PodSandboxStatusResponse)
    assert ps.status.state == pb.SANDBOX_NOTREADY
    assert g.call("RemovePodSandbox", {"pod_sandbox_id": pod_id},
                  timeout=CALL_TIMEOUT).ok() == {}
    r = g.call("PodSandboxStatus", {"pod_sandbox_id": pod_id})
    assert r.code == "NOT_FOUND", r
    assert g.call("ListPodSandbox").ok() == {"items": []}
    r = g.call("CreateContainer", {"pod_sandbox_id": pod_id, "config": as_dict(ccfg)})
    assert r.code == "NOT_FOUND", r
    assert g.stats()["dials"] == 1
    ctrs.nothing_left()


# --------------------------------------------------------------------------
# Many calls, cancellation, deadlines
# --------------------------------------------------------------------------

def test_200_concurrent_calls_on_one_connection(ctrs, go):
    """kubelet's mix of calls, 200 in flight at once on one ClientConn (more than the
    daemon's 128 concurrent streams: grpc-go queues the rest)."""
    g = go(ctrs.d)
    pod = ctrs.run_pod("conc")
    cid = ctrs.run(pod, "c", command=SLEEP)
    kinds = [
        ("Version", {"version": "v1"}),
        ("Status", {}),
        ("ListPodSandbox", {}),
        ("PodSandboxStatus", {"pod_sandbox_id": pod}),
        ("ListContainers", {}),
        ("ContainerStatus", {"container_id": cid}),
        ("ImageStatus", {"image": {"image": ctrs.image_ref}}),
        ("ListImages", {}),
        ("ImageFsInfo", {}),
    ]
    specs = []
    for i in range(200):
        if i % 10 == 9:
            specs.append(g.spec("ExecSync", {"container_id": cid, "cmd": ["echo", "n%d" % i]},
                                timeout=CALL_TIMEOUT))
        else:
            method, req = kinds[i % len(kinds)]
            specs.append(g.spec(method, req, timeout=CALL_TIMEOUT))
    results, elapsed = g.concurrent(specs)
    bad = [r for r in results if r.code != "OK"]
    assert not bad, bad[:5]
    for i, r in enumerate(results):
        if r.method == "ExecSync":
            assert unb64(r.reply["stdout"]) == b"n%d\n" % i
        elif r.method == "ContainerStatus":
            assert r.reply["status"]["id"] == cid
            assert r.reply["status"]["state"] == "CONTAINER_RUNNING"
        elif r.method == "PodSandboxStatus":
            assert r.reply["status"]["state"] == "SANDBOX_READY"
        elif r.method == "ImageStatus":
            assert r.reply["image"]["id"] == ctrs.image_id
        elif r.method == "Version":
            assert r.reply["runtime_name"] == "tinycri"
    st = g.stats()
    assert st["dials"] == 1 and st["state"] == "READY"
    assert st["frames_sent"]["HEADERS"] >= 200
    print("200 concurrent calls on one connection: %.2fs" % elapsed)


def test_cancelled_exec_leaves_no_process(ctrs, go):
    """kubelet cancels a probe's ExecSync (its context ends): the client sees
    CANCELLED, and the exec'd process does not outlive the call."""
    g = go(ctrs.d)
    pod = ctrs.run_pod("cancel")
    cid = ctrs.run(pod, "c", command=SLEEP)
    argv = ["sleep", "4321"]
    result = call_in_background(g, "ExecSync", {"container_id": cid, "cmd": argv}, timeout=60,
                                cancel_after=2.0)
    wait_until(lambda: procs_with_args(*argv), 10, what="the exec'd %s to run" % " ".join(argv))
    r = result()
    assert r.code == "CANCELLED", r
    assert 1.9 < r.elapsed < 5, r.elapsed
    wait_until(lambda: not procs_with_args(*argv), 10,
               what=lambda: "the cancelled exec's %s to go (pids %s)"
               % (" ".join(argv), procs_with_args(*argv)))
    assert "sleep 4321" not in ctrs.out(cid, "ps", "-o", "args")
    # The connection and the container carry on.
    r = g.call("ExecSync", {"container_id": cid, "cmd": ["echo", "after"]}, timeout=CALL_TIMEOUT)
    assert unb64(r.ok()["stdout"]) == b"after\n"
    assert ctrs.state(cid) == ctrs.pb.CONTAINER_RUNNING
    assert g.stats()["dials"] == 1


def test_deadline_exceeded(ctrs, go):
    """A call that outlives its deadline ends with DEADLINE_EXCEEDED at the deadline,
    and the connection carries on."""
    g = go(ctrs.d)
    pod = ctrs.run_pod("deadline")
    cid = ctrs.run(pod, "c", command=SLEEP)
    argv = ["sleep", "4322"]
    result = call_in_background(g, "ExecSync", {"container_id": cid, "cmd": argv}, timeout=2.0)
    wait_until(lambda: procs_with_args(*argv), 10, what="the exec'd %s to run" % " ".join(argv))
    r = result()
    assert r.code == "DEADLINE_EXCEEDED", r
    assert 1.9 < r.elapsed < 4, r.elapsed
    wait_until(lambda: not procs_with_args(*argv), 10,
               what=lambda: "the abandoned exec's %s to go (pids %s)"
               % (" ".join(argv), procs_with_args(*argv)))
    assert g.call("Version", timeout=STATUS_TIMEOUT).ok()["runtime_name"] == "tinycri"
    assert g.stats()["dials"] == 1


# --------------------------------------------------------------------------
# A reply over 4 MiB
# --------------------------------------------------------------------------

def test_list_containers_reply_over_4mib(ctrs, go):
    """ListContainers of many containers with big labels and annotations: over 4 MiB.
    kubelet's 16 MiB receive limit takes it; grpc-go's default 4 MiB limit refuses it
    on the client side (RESOURCE_EXHAUSTED), and the connection carries on."""
    pb = ctrs.pb
    g = go(ctrs.d)
    pod = ctrs.run_pod("big")
    n = 20
    per = 256 * KiB  # labels + annotations of one container
    value = "v" * (16 * KiB)
    labels = {"label-%02d" % i: value for i in range(per // len(value) // 2)}
    annotations = {"note-%02d" % i: value for i in range(per // len(value) // 2)}
    cfg = ctrs.pods[pod]
    specs = [g.spec("CreateContainer", pb.CreateContainerRequest(
        pod_sandbox_id=pod, sandbox_config=cfg,
        config=ctrs.config("big%02d" % i, command=SLEEP, labels=labels,
                           annotations=annotations)), timeout=CALL_TIMEOUT)
             for i in range(n)]
    results, elapsed = g.concurrent(specs)
    assert all(r.code == "OK" for r in results), [r for r in results if r.code != "OK"][:3]
    ids = {r.reply["container_id"] for r in results}
    print("%d CreateContainer calls with %d KiB of labels each: %.1fs" % (n, per // KiB, elapsed))

    r = g.call("ListContainers", timeout=STATUS_TIMEOUT * 5)
    listed = r.msg(pb.ListContainersResponse).containers
    assert r.reply_size > GRPC_DEFAULT_MAX_RECV, r.reply_size
    assert {c.id for c in listed} == ids
    for c in listed:
        assert dict(c.labels) == labels and dict(c.annotations) == annotations

    r = g.call("ListContainers", max_recv=GRPC_DEFAULT_MAX_RECV, omit_reply=True)
    assert r.code == "RESOURCE_EXHAUSTED", r
    assert "received message larger than max" in r.message, r.message
    assert "vs. %d" % GRPC_DEFAULT_MAX_RECV in r.message, r.message
    # A filtered list fits, on the same connection.
    one = sorted(ids)[0]
    r = g.call("ListContainers", {"filter": {"id": one}}, max_recv=GRPC_DEFAULT_MAX_RECV)
    assert [c["id"] for c in r.ok()["containers"]] == [one]
    assert g.stats()["dials"] == 1


# --------------------------------------------------------------------------
# Keepalive and reconnection
# --------------------------------------------------------------------------

def test_keepalive_pings_on_an_idle_connection(daemon, go):
    """grpc-go's client keepalive at its minimum period (10 s) with no call in
    flight: the daemon answers the pings, never sends GOAWAY (ENHANCE_YOUR_CALM or
    any other), and the same connection serves the next call."""
    d = daemon()
    g = go(d, "-keepalive", "10s", "-keepalive-timeout", "3s")
    assert g.call("Version").ok()["runtime_name"] == "tinycri"
    before = g.stats()
    time.sleep(14)
    after = g.stats()
    # Keepalive PINGs carry 8 zero bytes; grpc-go's BDP-estimation PINGs (sent as
    # replies arrive) carry another payload and are not counted here.
    pings = after["keepalive_pings"] - before["keepalive_pings"]
    acks = after["keepalive_acks"] - before["keepalive_acks"]
    assert pings >= 1, "no keepalive ping in 14 s idle (%s)" % after
    assert acks == pings, "keepalive pings %d, acks %d" % (pings, acks)
    assert after["goaways"] == [], after["goaways"]
    assert after["state"] == "READY" and after["dials"] == 1 and after["conns_closed"] == 0
    assert g.call("Version").ok()["runtime_name"] == "tinycri"
    end = g.stats()
    assert end["dials"] == 1 and end["goaways"] == []
    assert not [gw for gw in end["goaways"] if gw["error_code"] == GOAWAY_ENHANCE_YOUR_CALM]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_reconnect_after_daemon_restart(daemon, go, api, sig):
    """The daemon stops (SIGTERM: GOAWAY, then close; kill -9: the socket just dies)
    and starts again on the same socket: the same ClientConn dials again by itself
    and its calls succeed; while the daemon is down they fail fast (UNAVAILABLE) or
    at their deadline, never hang."""
    d = daemon()
    g = go(d)
    assert g.call("Version").ok()["runtime_name"] == "tinycri"
    rc = d.stop(sig)
    assert rc == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    down = g.stats()
    if sig == signal.SIGTERM:
        # A graceful shutdown: the notice (last stream 2^31-1), then the final GOAWAY
        # naming the last stream served; both NO_ERROR.
        assert down["goaways"], "no GOAWAY on SIGTERM"
        assert {gw["error_code"] for gw in down["goaways"]} == {0}, down["goaways"]
        assert down["goaways"][-1]["last_stream_id"] == 1, down["goaways"]
    else:
        assert down["goaways"] == []
    r = g.call("Version", timeout=STATUS_TIMEOUT)
    assert r.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"), r
    assert r.elapsed < STATUS_TIMEOUT + 1

    d.start()
    results = []

    def answered():
        r = g.call("Version", timeout=STATUS_TIMEOUT)
        results.append(r.code)
        return r.code == "OK"
    wait_until(answered, 30, interval=0.2, what=lambda: "the ClientConn to reconnect (%s)"
               % results[-5:])
    assert set(results) <= {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"}, results
    st = g.stats()
    assert st["dials"] >= 2 and st["state"] == "READY", st
    # The restarted daemon serves everything on the new connection.
    status = g.call("Status", {"verbose": True}).msg(api.pb2.StatusResponse)
    assert {c.type for c in status.status.conditions} == {"RuntimeReady", "NetworkReady"}
    assert g.call("ListPodSandbox").ok() == {"items": []}
    assert g.stats()["dials"] == st["dials"]
