# SPDX-License-Identifier: Apache-2.0
"""Containers as kubelet sees them: CreateContainer, StartContainer, StopContainer,
RemoveContainer, ContainerStatus, ListContainers, ExecSync and ReopenContainerLog
against a real tinycrid, real pods (CNI bridge) and real OCI runtimes, with the
busybox test image pulled from the local registry.

Pods join a bridge of their own, tc-ctr0 (10.90.0.0/16, ipMasq off). While the
module runs, `iptables -I FORWARD -s 10.90.0.0/16 ! -o tc-ctr0 -j DROP` keeps pod
traffic on this machine; the rule and the bridge are removed at the end.

The default runtime handler is runc. test_crun_handler runs one container with
crun; Debian's crun 1.8.1 refuses a v1/v2 hybrid cgroup layout in which a
controller (hugetlb) is only on cgroup2, so that test mounts hugetlb on v1 first
when the layout needs it (and says so if it cannot).

Notes on what a test can expect from a container here:
  - a container is PID 1 of its own PID namespace (pid mode CONTAINER), and the
    kernel drops signals to a namespace's init that it has no handler for: a
    plain `sleep` ignores SIGTERM, so "stops quickly on SIGTERM" needs a shell
    that traps it;
  - exit codes of signalled processes are 128 + signal, as the keeper records.
Every test removes its containers and pods; the fixture then checks that no
mount is left under the daemon's directories and no keeper is still running.
Needs root.
"""
import json
import os
import re
import signal
import subprocess
import threading
import time

import grpc
import pytest

from conftest import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

BRIDGE = "tc-ctr0"
SUBNET = "10.90.0.0/16"
NETWORK = "tinycri-container-test"
FORWARD_RULE = ["FORWARD", "-s", SUBNET, "!", "-o", BRIDGE, "-j", "DROP"]
CALL_TIMEOUT = 60.0
PULL_TIMEOUT = 90.0
KiB = 1024
MiB = 1024 * KiB
LOG_RECORD = re.compile(r"^(\d{4}-\d\d-\d\dT\S+Z) (stdout|stderr) ([PF]) (.*)$")


def sh(*argv, check=True, **kw):
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def pod_network():
    """The FORWARD guard for the module; afterwards remove it and the bridge."""
    sh("iptables", "-I", *FORWARD_RULE)
    try:
        yield
    finally:
        while sh("iptables", "-D", *FORWARD_RULE, check=False).returncode == 0:
            pass
        if sh("ip", "link", "show", BRIDGE, check=False).returncode == 0:
            sh("ip", "link", "del", BRIDGE, check=False)


def conflist(ipam_dir):
    return {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": True,
            "ipMasq": False,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": ipam_dir,
            },
        }],
    }


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f
                if line.split()[4] == path or line.split()[4].startswith(path + "/")]


def keeper_pids(state_dir):
    """Pids of container keepers whose --state-dir lies under state_dir."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"tinycri-keeper") or b"--state-dir" not in argv:
            continue
        i = argv.index(b"--state-dir")
        if i + 1 < len(argv) and argv[i + 1].decode().startswith(state_dir + "/"):
            pids.append(int(entry))
    return pids


def is_sanitized(path):
    with open(path, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__ubsan_handle" in data


def rss_anon_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def hugetlb_on_v1_needed():
    """Hybrid cgroups with hugetlb only on cgroup2: the layout crun 1.8.1 refuses."""
    if not os.path.ismount("/sys/fs/cgroup/unified") or os.path.ismount("/sys/fs/cgroup/hugetlb"):
        return False
    with open("/sys/fs/cgroup/unified/cgroup.controllers") as f:
        return "hugetlb" in f.read().split()


def ensure_hugetlb_v1():
    if not hugetlb_on_v1_needed():
        return None
    os.makedirs("/sys/fs/cgroup/hugetlb", exist_ok=True)
    r = sh("mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", "/sys/fs/cgroup/hugetlb",
           check=False)
    return None if r.returncode == 0 else r.stderr.strip()


class Ctrs:
    """A daemon with the pod network, the busybox image, and helpers for pods and containers."""

    def __init__(self, d, api, images):
        self.d = d
        self.api = api
        self.pb = api.pb2
        self.images = images
        self.ipam_dir = os.path.join(d.tmp, "ipam")
        self.log_root = os.path.join(d.tmp, "logs")
        self.image_ref = images.ref("busybox")
        self.image_id = None

    @property
    def rt(self):
        return self.d.runtime

    # -- images and pods ------------------------------------------------------

    def pull(self, name="busybox"):
        ref = self.images.ref(name)
        return self.d.image.PullImage(
            self.pb.PullImageRequest(image=self.pb.ImageSpec(image=ref)),
            timeout=PULL_TIMEOUT).image_ref

    def pod_config(self, name, log_dir=True, pid="CONTAINER", network="POD", ipc="POD",
                   hostname=None):
        pb = self.pb
        mode = {"POD": pb.POD, "CONTAINER": pb.CONTAINER, "NODE": pb.NODE}
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid="uid-" + name, namespace="default"),
            hostname=name if hostname is None else hostname,
            log_directory=os.path.join(self.log_root, name) if log_dir else "",
            dns_config=pb.DNSConfig(servers=["10.90.0.10"], searches=["svc.test"],
                                    options=["ndots:3"]),
            linux=pb.LinuxPodSandboxConfig(
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=mode[network], pid=mode[pid],
                                                         ipc=mode[ipc]))))

    def run_pod(self, name="pod", handler="", **kw):
        cfg = self.pod_config(name, **kw)
        resp = self.rt.RunPodSandbox(self.pb.RunPodSandboxRequest(config=cfg,
                                                                  runtime_handler=handler),
                                     timeout=CALL_TIMEOUT)
        self.pods = getattr(self, "pods", {})
        self.pods[resp.pod_sandbox_id] = cfg
        return resp.pod_sandbox_id

    # -- containers -----------------------------------------------------------

    def config(self, name, command=None, args=None, image=None, envs=None, working_dir="",
               log_path=None, labels=None, annotations=None, mounts=(), attempt=0, **sec):
        pb = self.pb
        resources = sec.pop("resources", None)
        # As kubelet does: the container's namespaces follow the pod's.
        sec.setdefault("namespace_options", pb.NamespaceOption(
            network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))
        cfg = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=attempt),
            image=pb.ImageSpec(image=image or self.image_ref),
            command=command or [],
            args=args or [],
            working_dir=working_dir,
            envs=[pb.KeyValue(key=k, value=v.encode()) for k, v in (envs or {}).items()],
            labels=labels or {},
            annotations=annotations or {},
            mounts=[pb.Mount(**m) for m in mounts],
            log_path=("%s/%d.log" % (name, attempt)) if log_path is None else log_path,
            linux=pb.LinuxContainerConfig(
                security_context=pb.LinuxContainerSecurityContext(**sec)),
        )
        if resources:
            cfg.linux.resources.CopyFrom(pb.LinuxContainerResources(**resources))
        return cfg

    def create(self, pod_id, name="c", **kw):
        cfg = self.config(name, **kw)
        pod_cfg = self.pods[pod_id]
        resp = self.rt.CreateContainer(
            self.pb.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg,
                                           sandbox_config=pod_cfg),
            timeout=CALL_TIMEOUT)
        assert re.fullmatch(r"[0-9a-f]{64}", resp.container_id)
        return resp.container_id

    def create_fails(self, pod_id, name="c", **kw):
        with pytest.raises(grpc.RpcError) as ei:
            self.create(pod_id, name, **kw)
        return ei.value

    def start(self, cid):
        self.rt.StartContainer(self.pb.StartContainerRequest(container_id=cid),
                               timeout=CALL_TIMEOUT)

    def run(self, pod_id, name="c", **kw):
        cid = self.create(pod_id, name, **kw)
        self.start(cid)
        return cid

    def stop(self, cid, timeout=0, deadline=CALL_TIMEOUT):
        self.rt.StopContainer(self.pb.StopContainerRequest(container_id=cid, timeout=timeout),
                              timeout=deadline)

    def remove(self, cid):
        self.rt.RemoveContainer(self.pb.RemoveContainerRequest(container_id=cid),
                                timeout=CALL_TIMEOUT)

    def status(self, cid, verbose=False):
        return self.rt.ContainerStatus(
            self.pb.ContainerStatusRequest(container_id=cid, verbose=verbose), timeout=10)

    def info(self, cid):
        return json.loads(self.status(cid, verbose=True).info["info"])

    def state(self, cid):
        return self.status(cid).status.state

    def list(self, **filt):
        f = self.pb.ContainerFilter(**filt) if filt else None
        return self.rt.ListContainers(self.pb.ListContainersRequest(filter=f),
                                      timeout=10).containers

    def exec(self, cid, *cmd, timeout=0, deadline=CALL_TIMEOUT):
        return self.rt.ExecSync(self.pb.ExecSyncRequest(container_id=cid, cmd=list(cmd),
                                                        timeout=timeout),
                                timeout=deadline)

    def out(self, cid, *cmd):
        r = self.exec(cid, *cmd)
        assert r.exit_code == 0, "%s: exit %d, stderr %r" % (cmd, r.exit_code, r.stderr)
        return r.stdout.decode()

    def wait_exited(self, cid, timeout=30):
        wait_until(lambda: self.state(cid) == self.pb.CONTAINER_EXITED, timeout,
                   what=lambda: "container %s to exit (state %d)" % (cid, self.state(cid)))
        return self.status(cid).status

    def log_path(self, pod_name, name, attempt=0):
        return os.path.join(self.log_root, pod_name, name, "%d.log" % attempt)

    # -- what is on disk ----------------------------------------------------------

    def container_dirs(self):
        out = []
        for base in (os.path.join(self.d.root, "containers"), os.path.join(self.d.state, "ctr")):
            if os.path.isdir(base):
                out += [os.path.join(base, n) for n in os.listdir(base)]
        return out

    def nothing_left(self):
        assert self.container_dirs() == []
        assert mounts_under(os.path.join(self.d.root, "containers")) == []
        assert list(self.list()) == []

    def cleanup(self):
        for c in self.list():
            self.remove(c.id)
        for pod_id in list(getattr(self, "pods", {})):
            self.rt.RemovePodSandbox(self.pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id),
                                     timeout=CALL_TIMEOUT)


def daemon_config(images, extra=None):
    cfg = {"runtime": {"default_runtime": "runc"},
           "registry." + images.host: {"insecure": "true"}}
    for k, v in (extra or {}).items():
        cfg.setdefault(k, {}).update(v)
    return cfg


@pytest.fixture
def ctrs(request, daemon, api, pod_network, pushed_images):
    """A started daemon (runc default), the pod network and the busybox image pulled.
    At the end: every container and pod removed, nothing left on disk or running.
    Parametrized indirectly with {"state_subdir": name}: the daemon's state dir is
    <tmp>/state/<name> instead."""
    d = daemon(start=False)
    sub = getattr(request, "param", {}).get("state_subdir")
    if sub:
        d.state = os.path.join(d.state, sub)
    c = Ctrs(d, api, pushed_images)
    d.write_cni("10-test.conflist", conflist(c.ipam_dir))
    d.write_config(daemon_config(pushed_images))
    d.start()
    c.image_id = c.pull()
    yield c
    problems = []
    if d.alive():
        try:
            c.cleanup()
            wait_until(lambda: c.container_dirs() == [], 10, what="container directories to go")
        except grpc.RpcError as e:
            problems.append("cleanup: %s %s" % (e.code(), e.details()))
        rc = d.stop()
        if rc != 0:
            problems.append("tinycrid exited with status %d" % rc)
    keepers = keeper_pids(d.state)
    for pid in keepers:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for root in ("runc", "crun"):
        rdir = os.path.join(d.state, "runtime", root)
        if os.path.isdir(rdir):
            for cid in os.listdir(rdir):
                sh("/usr/bin/" + root, "--root", rdir, "delete", "--force", cid, check=False)
    left = mounts_under(d.tmp)
    for m in sorted(left, key=len, reverse=True):
        sh("umount", "-l", m, check=False)
    if keepers:
        problems.append("keepers left running: %s" % keepers)
    if [m for m in left if "/containers/" in m]:
        problems.append("mounts left under %s: %s" % (d.tmp, left))
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


SLEEP = ["sleep", "3600"]


# --------------------------------------------------------------------------
# The lifecycle
# --------------------------------------------------------------------------

def test_create_start_exec_stop_remove(ctrs):
    pb = ctrs.pb
    pod = ctrs.run_pod("life")
    cid = ctrs.create(pod, "sleeper", command=SLEEP, labels={"app": "x"},
                      annotations={"note": "y"})
    st = ctrs.status(cid).status
    assert st.state == pb.CONTAINER_CREATED
    assert st.created_at > 0 and st.started_at == 0 and st.finished_at == 0
    assert st.metadata.name == "sleeper"
    assert st.image.image == ctrs.image_ref
    # image_ref: the digested reference (kubelet's imageID), as containerd and CRI-O give
    assert st.image_ref == "%s/busybox@%s" % (ctrs.images.host, ctrs.images["busybox"].digest)
    assert st.image_id == ctrs.image_id
    assert dict(st.labels) == {"app": "x"} and dict(st.annotations) == {"note": "y"}
    assert st.log_path == ctrs.log_path("life", "sleeper")

    ctrs.start(cid)
    st = ctrs.status(cid).status
    assert st.state == pb.CONTAINER_RUNNING
    assert st.started_at >= st.created_at

    assert ctrs.out(cid, "hostname").strip() == "life"
    hosts = ctrs.out(cid, "cat", "/etc/hosts")
    assert "localhost" in hosts
    resolv = ctrs.out(cid, "cat", "/etc/resolv.conf")
    assert "nameserver 10.90.0.10" in resolv and "svc.test" in resolv

    info = ctrs.info(cid)
    assert info["pid"] > 0 and info["keeperPid"] > 0 and info["runtime"] == "runc"
    assert os.path.ismount(info["rootfs"])

    t0 = time.monotonic()
    ctrs.stop(cid, timeout=0)
    assert time.monotonic() - t0 < 10
    st = ctrs.status(cid).status
    assert st.state == pb.CONTAINER_EXITED
    assert st.exit_code == 137 and st.reason == "Error"
    assert st.finished_at >= st.started_at
    ctrs.stop(cid, timeout=0)  # idempotent on EXITED

    ctrs.remove(cid)
    with pytest.raises(grpc.RpcError) as ei:
        ctrs.status(cid)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    ctrs.remove(cid)  # idempotent
    assert not os.path.exists(info["rootfs"])
    ctrs.nothing_left()


def test_env_user_workdir_and_args(ctrs):
    pod = ctrs.run_pod("env")
    cid = ctrs.run(pod, "envs", command=["sh", "-c"], args=["echo merged-$0; sleep 3600", "zero"],
                   envs={"GREETING": "hello", "EMPTY": ""}, working_dir="/tmp",
                   run_as_user=ctrs.pb.Int64Value(value=1000))
    env = ctrs.out(cid, "env").splitlines()
    assert "GREETING=hello" in env
    assert "HOSTNAME=env" in env
    assert any(line.startswith("PATH=") for line in env)
    assert ctrs.out(cid, "id", "-u").strip() == "1000"
    assert ctrs.out(cid, "pwd").strip() == "/tmp"
    # command + args: `sh -c "echo merged-$0; sleep 3600" zero`
    path = ctrs.log_path("env", "envs")
    wait_until(lambda: os.path.exists(path) and "merged-zero" in open(path).read(), 10,
               what="the init's first line in the log")


def test_args_only_use_the_image_entrypoint(ctrs, pushed_images):
    """full-config: Entrypoint ["/bin/sh", "-c"], Cmd ["echo hello"], User 1000:1000,
    WorkingDir /home/app, Env GREETING=hello, StopSignal SIGQUIT, Volumes /data."""
    ref = pushed_images.ref("full-config")
    ctrs.pull("full-config")
    pod = ctrs.run_pod("merge")
    cid = ctrs.run(pod, "defaults", image=ref, log_path="defaults.log")
    st = ctrs.wait_exited(cid)
    assert st.exit_code == 0 and st.reason == "Completed"
    with open(os.path.join(ctrs.log_root, "merge", "defaults.log")) as f:
        assert f.read().rstrip("\n").endswith("stdout F hello")
    script = ("id -u; pwd; echo $GREETING; "
              "grep -q ' /data ' /proc/self/mountinfo && echo volume-ok")
    cid2 = ctrs.run(pod, "args", image=ref, args=[script], log_path="args.log")
    st = ctrs.wait_exited(cid2)
    assert st.exit_code == 0, st
    with open(os.path.join(ctrs.log_root, "merge", "args.log")) as f:
        lines = [LOG_RECORD.match(l).group(4) for l in f.read().splitlines()]
    assert lines == ["1000", "/home/app", "hello", "volume-ok"]
    assert ctrs.info(cid2)["stopSignal"] == signal.SIGQUIT  # the image's StopSignal


def test_shared_pid_namespace(ctrs):
    """Pod pid mode POD (shareProcessNamespace): the pod's containers see each other."""
    pb = ctrs.pb
    pod = ctrs.run_pod("sharedpid", pid="POD")
    ns = pb.NamespaceOption(network=pb.POD, pid=pb.POD, ipc=pb.POD)
    ctrs.run(pod, "a", command=["sleep", "3601"], namespace_options=ns)
    b = ctrs.run(pod, "b", command=["sleep", "3602"], namespace_options=ns)
    ps = ctrs.out(b, "ps", "-o", "pid,args")
    assert "sleep 3601" in ps and "sleep 3602" in ps
    # pid POD in a pod without a shared namespace (pid CONTAINER): one of its own, as in
    # containerd (test_namespaces.py checks every combination).
    other = ctrs.run_pod("ownpid")
    x = ctrs.run(other, "x", command=["sleep", "3603"], namespace_options=ns)
    ps = ctrs.out(x, "ps", "-o", "pid,args")
    assert "sleep 3603" in ps and "sleep 3601" not in ps
    assert ctrs.out(x, "cat", "/proc/1/cmdline").split("\0")[:2] == ["sleep", "3603"]


def test_readonly_rootfs(ctrs):
    pod = ctrs.run_pod("ro")
    cid = ctrs.run(pod, "ro", command=SLEEP, readonly_rootfs=True)
    r = ctrs.exec(cid, "touch", "/x")
    assert r.exit_code != 0
    assert b"Read-only file system" in r.stderr
    assert ctrs.exec(cid, "touch", "/dev/shm/x").exit_code == 0


def test_capability_drop(ctrs):
    pod = ctrs.run_pod("caps")
    cid = ctrs.run(pod, "nochown", command=SLEEP,
                   capabilities=ctrs.pb.Capability(drop_capabilities=["CHOWN"]))
    line = ctrs.out(cid, "grep", "CapEff", "/proc/self/status")
    mask = int(line.split()[1], 16)
    assert mask & 1 == 0, line
    assert mask & (1 << 1), "CAP_DAC_OVERRIDE should remain: %s" % line
    cid2 = ctrs.run(pod, "withchown", command=SLEEP)
    mask2 = int(ctrs.out(cid2, "grep", "CapEff", "/proc/self/status").split()[1], 16)
    assert mask2 & 1


def test_memory_limit_is_in_the_cgroup(ctrs):
    pod = ctrs.run_pod("mem")
    cid = ctrs.run(pod, "limited", command=SLEEP,
                   resources={"memory_limit_in_bytes": 64 * MiB})
    pid = ctrs.info(cid)["pid"]
    with open("/proc/%d/cgroup" % pid) as f:
        path = [l.split(":", 2)[2].strip() for l in f if l.split(":")[1] == "memory"][0]
    with open("/sys/fs/cgroup/memory%s/memory.limit_in_bytes" % path) as f:
        assert int(f.read()) == 64 * MiB
    inside = ctrs.exec(cid, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    if inside.exit_code == 0:
        assert int(inside.stdout) == 64 * MiB
    st = ctrs.status(cid).status
    assert st.resources.linux.memory_limit_in_bytes == 64 * MiB


def test_oom_killed(ctrs):
    pod = ctrs.run_pod("oom")
    cid = ctrs.run(pod, "hog", command=["sh", "-c", "x=$(tr '\\0' a < /dev/zero); echo never"],
                   resources={"memory_limit_in_bytes": 16 * MiB})
    st = ctrs.wait_exited(cid, timeout=60)
    assert st.reason == "OOMKilled", st
    assert st.exit_code == 137


@pytest.mark.parametrize("code,reason", [(3, "Error"), (0, "Completed")])
def test_exit_codes(ctrs, code, reason):
    pod = ctrs.run_pod("exit")
    cid = ctrs.run(pod, "x", command=["sh", "-c", "exit %d" % code])
    st = ctrs.wait_exited(cid)
    assert st.exit_code == code
    assert st.reason == reason
    assert st.finished_at >= st.started_at > 0


def test_stop_timeout_then_sigkill(ctrs):
    pod = ctrs.run_pod("stop")
    cid = ctrs.run(pod, "stubborn", command=["sh", "-c", "trap '' TERM; sleep 1000"])
    t0 = time.monotonic()
    ctrs.stop(cid, timeout=2)
    took = time.monotonic() - t0
    assert 1.5 <= took < 10, took
    st = ctrs.status(cid).status
    assert st.state == ctrs.pb.CONTAINER_EXITED
    assert st.exit_code == 137


def test_stop_on_sigterm_is_quick(ctrs):
    pod = ctrs.run_pod("stopq")
    cid = ctrs.run(pod, "polite", command=["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"])
    time.sleep(0.3)  # let the shell install its trap
    t0 = time.monotonic()
    ctrs.stop(cid, timeout=10)
    assert time.monotonic() - t0 < 5
    st = ctrs.status(cid).status
    assert st.exit_code == 0 and st.reason == "Completed"


def test_stop_a_created_container(ctrs):
    """Nothing runs before a start: StopContainer leaves the container CREATED (as
    containerd does; no 1970 start time shown as EXITED), and it can still be started."""
    pb = ctrs.pb
    pod = ctrs.run_pod("created")
    cid = ctrs.create(pod, "never", command=SLEEP)
    t0 = time.monotonic()
    ctrs.stop(cid, timeout=30)
    assert time.monotonic() - t0 < 5
    st = ctrs.status(cid).status
    assert st.state == pb.CONTAINER_CREATED
    assert st.started_at == 0 and st.finished_at == 0 and st.exit_code == 0
    ctrs.start(cid)
    assert ctrs.state(cid) == pb.CONTAINER_RUNNING
    ctrs.remove(cid)
    # A stopped pod runs nothing: its created containers are killed with it.
    other = ctrs.create(pod, "never2", command=SLEEP)
    ctrs.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=CALL_TIMEOUT)
    assert ctrs.state(other) == pb.CONTAINER_EXITED
    ctrs.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod),
                             timeout=CALL_TIMEOUT)
    assert list(ctrs.list()) == []
    # The pod's containers are torn down after RemovePodSandbox returns (issue 11).
    wait_until(lambda: not ctrs.container_dirs(), 10, what="the created container's teardown")
    ctrs.nothing_left()


def test_remove_a_running_container(ctrs):
    pod = ctrs.run_pod("rmrun")
    cid = ctrs.run(pod, "busy", command=SLEEP)
    rootfs = ctrs.info(cid)["rootfs"]
    ctrs.remove(cid)
    assert not os.path.exists(rootfs)
    ctrs.nothing_left()


# --------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------

def read_records(path):
    with open(path) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        m = LOG_RECORD.match(line)
        assert m, "not a CRI log line: %r" % line
        out.append(m.groups())
    return out


def test_log_lines(ctrs):
    pod = ctrs.run_pod("logs")
    cid = ctrs.run(pod, "talk", command=["sh", "-c", "echo hello; echo err >&2"])
    ctrs.wait_exited(cid)
    path = ctrs.log_path("logs", "talk")
    recs = read_records(path)
    assert ("stdout", "F", "hello") in [r[1:] for r in recs]
    assert ("stderr", "F", "err") in [r[1:] for r in recs]
    with open(path) as f:
        assert re.search(r"^\d{4}-\d\d-\d\dT\S+Z stdout F hello$", f.read(), re.M)


def test_long_line_is_split(ctrs):
    pod = ctrs.run_pod("long")
    cid = ctrs.run(pod, "long", command=["sh", "-c", "head -c 20000 /dev/zero | tr '\\0' a; echo"])
    ctrs.wait_exited(cid)
    recs = read_records(ctrs.log_path("long", "long"))
    tags = [r[2] for r in recs if r[1] == "stdout"]
    assert tags[0] == "P" and tags[-1] == "F"
    assert "".join(r[3] for r in recs if r[1] == "stdout") == "a" * 20000


def test_no_log_directory_means_no_log(ctrs):
    pod = ctrs.run_pod("nolog", log_dir=False)
    cid = ctrs.run(pod, "quiet", command=["sh", "-c", "echo hi"])
    st = ctrs.wait_exited(cid)
    assert st.exit_code == 0
    assert st.log_path == ""


def test_reopen_container_log(ctrs):
    pod = ctrs.run_pod("rotate")
    cid = ctrs.run(pod, "ticker", command=["sh", "-c",
                                           "i=0; while true; do echo tick$i; i=$((i+1)); "
                                           "sleep 0.1; done"])
    path = ctrs.log_path("rotate", "ticker")
    wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 10,
               what="the first log lines")
    os.rename(path, path + ".1")
    ctrs.rt.ReopenContainerLog(ctrs.pb.ReopenContainerLogRequest(container_id=cid), timeout=10)
    wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 10,
               what="lines in the reopened log")
    old = read_records(path + ".1")
    new = read_records(path)
    n_old = int(old[-1][3][4:])
    n_new = int(new[0][3][4:])
    assert n_new > n_old
    ctrs.stop(cid)
    with pytest.raises(grpc.RpcError) as ei:
        ctrs.rt.ReopenContainerLog(ctrs.pb.ReopenContainerLogRequest(container_id=cid),
                                   timeout=10)
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize("ctrs", [{"state_subdir": "x" * 60}], indirect=True)
def test_long_state_dir(ctrs):
    """Container sockets under a state dir too long for a socket address
    (<state_dir>/ctr/<64-hex id>/console.sock > 107 bytes) are reached through
    /proc/<pid>/fd: tty and non-tty containers run and ReopenContainerLog works."""
    assert len(os.path.join(ctrs.d.state, "ctr", "0" * 64, "console.sock")) > 107
    handlers = ["runc"]
    if not ensure_hugetlb_v1():
        handlers.append("crun")
    for handler in handlers:
        pod_name = "long" + handler
        pod = ctrs.run_pod(pod_name, handler=handler)
        cfg = ctrs.config("tty", command=["sh", "-c", "tty; while true; do sleep 1; done"])
        cfg.tty = True
        cfg.stdin = True
        tty_id = ctrs.rt.CreateContainer(
            ctrs.pb.CreateContainerRequest(pod_sandbox_id=pod, config=cfg,
                                           sandbox_config=ctrs.pods[pod]),
            timeout=CALL_TIMEOUT).container_id
        ctrs.start(tty_id)
        plain = ctrs.run(pod, "plain", command=["sh", "-c",
                                                "i=0; while true; do echo tick$i; "
                                                "i=$((i+1)); sleep 0.1; done"])
        assert ctrs.info(tty_id)["runtime"] == handler
        assert ctrs.state(tty_id) == ctrs.pb.CONTAINER_RUNNING
        assert ctrs.state(plain) == ctrs.pb.CONTAINER_RUNNING
        tty_log = ctrs.log_path(pod_name, "tty")
        wait_until(lambda: os.path.exists(tty_log) and any(
            "/dev/" in r[3] for r in read_records(tty_log)), 10, what="the tty's output")
        assert ctrs.out(tty_id, "echo", "hi") == "hi\n"
        for cid, name in ((plain, "plain"), (tty_id, "tty")):
            path = ctrs.log_path(pod_name, name)
            wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 10,
                       what="the first log lines")
            os.rename(path, path + ".1")
            ctrs.rt.ReopenContainerLog(ctrs.pb.ReopenContainerLogRequest(container_id=cid),
                                       timeout=10)
            assert os.path.exists(path)
        path = ctrs.log_path(pod_name, "plain")
        wait_until(lambda: os.path.getsize(path) > 0, 10, what="lines in the reopened log")
        assert int(read_records(path)[0][3][4:]) > int(read_records(path + ".1")[-1][3][4:])
        for cid in (tty_id, plain):
            ctrs.stop(cid)
            assert ctrs.state(cid) == ctrs.pb.CONTAINER_EXITED
            ctrs.remove(cid)


# --------------------------------------------------------------------------
# ExecSync
# --------------------------------------------------------------------------

def test_exec_exit_code_and_stderr(ctrs):
    pod = ctrs.run_pod("exec")
    cid = ctrs.run(pod, "x", command=SLEEP)
    r = ctrs.exec(cid, "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (r.stdout, r.stderr, r.exit_code) == (b"out\n", b"err\n", 5)
    with pytest.raises(grpc.RpcError) as ei:
        ctrs.exec(cid)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_exec_timeout(ctrs):
    pod = ctrs.run_pod("exect")
    cid = ctrs.run(pod, "x", command=SLEEP)
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as ei:
        ctrs.exec(cid, "sleep", "10", timeout=1, deadline=20)
    took = time.monotonic() - t0
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, ei.value.details()
    assert took < 3, took
    # The exec'd sleep is gone too.
    ps = ctrs.out(cid, "ps", "-o", "args")
    assert "sleep 10" not in ps
    # No timeout of its own, but the client gives up: the process goes as well.
    with pytest.raises(grpc.RpcError) as ei:
        ctrs.exec(cid, "sleep", "30", deadline=1)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: "sleep 30" not in ctrs.out(cid, "ps", "-o", "args"), 5,
               what="the abandoned exec to be killed")


# An init that reaps adopted children, as a pod's shared-PID init does: busybox sh waits
# with waitpid(-1) between loop iterations.
REAPING_INIT = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]


def exec_leftovers(ctrs, cid, marks):
    """Processes of the container's PID namespace that are zombies or carry one of marks."""
    ps = ctrs.out(cid, "ps", "-o", "pid,stat,args")
    bad = []
    for line in ps.splitlines()[1:]:
        fields = line.split(None, 2)
        if len(fields) < 3 or "ps -o" in fields[2]:
            continue
        if fields[1].startswith("Z") or any(m in fields[2] for m in marks):
            bad.append(line.strip())
    return bad


@pytest.mark.parametrize("handler", ["runc", "crun"])
@pytest.mark.parametrize("pid_mode", ["POD", "CONTAINER"])
def test_exec_ended_early_leaves_no_process_and_no_zombie(ctrs, handler, pid_mode):
    """An ExecSync that times out, whose client deadline passes, or whose client cancels:
    the process and everything it started are killed and reaped, in a pod with a shared PID
    namespace and without; a zombie left to the host's init would stay in the pod forever."""
    if handler == "crun":
        why = ensure_hugetlb_v1()
        if why:
            pytest.skip("hugetlb cannot be mounted on cgroup v1 for crun: %s" % why)
    pb = ctrs.pb
    pod = ctrs.run_pod("execkill", handler=handler, pid=pid_mode)
    ns = pb.NamespaceOption(network=pb.POD, ipc=pb.POD,
                            pid=pb.POD if pid_mode == "POD" else pb.CONTAINER)
    # A container's own PID namespace has the container as init: it must reap what is
    # orphaned to it (the tree case), as the pod-init does for a shared namespace.
    cid = ctrs.run(pod, "x", command=REAPING_INIT, namespace_options=ns)

    def ended(how, *cmd):
        t0 = time.monotonic()
        if how == "timeout":
            with pytest.raises(grpc.RpcError) as ei:
                ctrs.exec(cid, *cmd, timeout=1, deadline=20)
            assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, ei.value.details()
        elif how == "deadline":
            with pytest.raises(grpc.RpcError) as ei:
                ctrs.exec(cid, *cmd, deadline=1)
            assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        else:
            f = ctrs.rt.ExecSync.future(pb.ExecSyncRequest(container_id=cid, cmd=list(cmd)),
                                        timeout=20)
            wait_until(lambda: any(cmd[-1] in p for p in
                                   ctrs.out(cid, "ps", "-o", "args").splitlines()),
                       10, what="the exec to start")
            f.cancel()
            assert f.cancelled()
        assert time.monotonic() - t0 < 8
        marks = [m for m in ("4321", "4322", "4323") if any(m in c for c in cmd)]
        wait_until(lambda: not exec_leftovers(ctrs, cid, marks), 5,
                   what=lambda: "the %s exec to leave nothing: %s"
                   % (how, exec_leftovers(ctrs, cid, marks)))

    for how in ("timeout", "deadline", "cancel"):
        ended(how, "sleep", "4321")
        ended(how, "sh", "-c", "sleep 4322 & sleep 4323; echo unreachable")
    # The container itself is untouched, and exec still works.
    assert ctrs.state(cid) == pb.CONTAINER_RUNNING
    assert ctrs.out(cid, "echo", "alive").strip() == "alive"


def test_exec_timeout_does_not_wait_for_a_sleeping_main_process(ctrs):
    """The container's init is a plain sleep that reaps nothing: the timed-out exec'd
    process is still reaped (by the runtime, which must outlive it)."""
    pod = ctrs.run_pod("execsleep")
    cid = ctrs.run(pod, "x", command=SLEEP)
    with pytest.raises(grpc.RpcError) as ei:
        ctrs.exec(cid, "sleep", "4321", timeout=1, deadline=20)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: not exec_leftovers(ctrs, cid, ["4321"]), 5,
               what=lambda: "nothing left: %s" % exec_leftovers(ctrs, cid, ["4321"]))


def test_exec_output_is_capped(ctrs):
    pod = ctrs.run_pod("execcap")
    cid = ctrs.run(pod, "x", command=SLEEP)
    before = rss_anon_kib(ctrs.d.pid)
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_anon_kib(ctrs.d.pid))
            time.sleep(0.005)
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        r = ctrs.exec(cid, "sh", "-c", "head -c %d /dev/zero" % (20 * MiB))
    finally:
        done.set()
        sampler.join()
    print("tinycrid RssAnon peak during a 20 MiB exec: %d KiB" % peak[0])
    assert r.exit_code == 0
    assert 0 < len(r.stdout) + len(r.stderr) <= 16 * MiB
    assert len(r.stdout) >= 7 * MiB
    after = rss_anon_kib(ctrs.d.pid)
    print("tinycrid RssAnon before=%d KiB after=%d KiB" % (before, after))
    if not is_sanitized(ctrs.d.binary):  # ASan keeps freed memory in quarantine
        assert after < before + 8 * 1024, (before, after)
        assert peak[0] < before + 40 * 1024, (before, peak[0])
    assert ctrs.out(cid, "echo", "still-fine").strip() == "still-fine"


def test_exec_on_a_stopped_container(ctrs):
    pod = ctrs.run_pod("execx")
    cid = ctrs.run(pod, "x", command=["true"])
    ctrs.wait_exited(cid)
    with pytest.raises(grpc.RpcError) as ei:
        ctrs.exec(cid, "true")
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION


# --------------------------------------------------------------------------
# Errors leave nothing behind
# --------------------------------------------------------------------------

def test_missing_image(ctrs):
    pod = ctrs.run_pod("noimg")
    e = ctrs.create_fails(pod, "x", image=ctrs.images.host + "/nope:latest")
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert "image" in e.details() and "not found" in e.details()
    ctrs.nothing_left()


def test_bad_mount_host_path(ctrs):
    pod = ctrs.run_pod("badmount")
    e = ctrs.create_fails(pod, "x", command=SLEEP,
                          mounts=[{"container_path": "/data", "host_path": "/nonexistent/tc"}])
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    ctrs.nothing_left()


def test_unknown_sandbox(ctrs):
    ctrs.pods = {"0" * 64: ctrs.pod_config("ghost")}
    e = ctrs.create_fails("0" * 64, "x", command=SLEEP)
    assert e.code() == grpc.StatusCode.NOT_FOUND
    ctrs.pods = {}


def test_stopped_sandbox_is_failed_precondition(ctrs):
    pod = ctrs.run_pod("stopped")
    ctrs.rt.StopPodSandbox(ctrs.pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    e = ctrs.create_fails(pod, "x", command=SLEEP)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    ctrs.nothing_left()


def test_same_name_and_attempt(ctrs):
    pod = ctrs.run_pod("dup")
    ctrs.create(pod, "same", command=SLEEP)
    e = ctrs.create_fails(pod, "same", command=SLEEP)
    assert e.code() == grpc.StatusCode.ALREADY_EXISTS
    ctrs.create(pod, "same", command=SLEEP, attempt=1)


def test_unknown_container_ids(ctrs):
    unknown = "f" * 64
    for call in (lambda: ctrs.status(unknown), lambda: ctrs.start(unknown),
                 lambda: ctrs.stop(unknown), lambda: ctrs.exec(unknown, "true")):
        with pytest.raises(grpc.RpcError) as ei:
            call()
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    ctrs.remove(unknown)


def test_unknown_runtime_handler_at_run_pod(ctrs):
    with pytest.raises(grpc.RpcError) as ei:
        ctrs.run_pod("nohandler", handler="no-such-handler")
    assert ei.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT,
                               grpc.StatusCode.FAILED_PRECONDITION)


def test_start_twice_is_failed_precondition(ctrs):
    pod = ctrs.run_pod("twice")
    cid = ctrs.run(pod, "x", command=SLEEP)
    with pytest.raises(grpc.RpcError) as ei:
        ctrs.start(cid)
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION


# --------------------------------------------------------------------------
# ListContainers
# --------------------------------------------------------------------------

def test_list_filters(ctrs):
    pb = ctrs.pb
    pod1 = ctrs.run_pod("list1")
    pod2 = ctrs.run_pod("list2")
    a = ctrs.run(pod1, "a", command=SLEEP, labels={"tier": "web"})
    b = ctrs.create(pod1, "b", command=SLEEP, labels={"tier": "db"})
    c = ctrs.run(pod2, "c", command=SLEEP, labels={"tier": "web"})
    ids = lambda cs: sorted(x.id for x in cs)  # noqa: E731
    assert ids(ctrs.list()) == sorted([a, b, c])
    assert ids(ctrs.list(id=a[:12])) == [a]
    assert ids(ctrs.list(pod_sandbox_id=pod1)) == sorted([a, b])
    assert ids(ctrs.list(state=pb.ContainerStateValue(state=pb.CONTAINER_CREATED))) == [b]
    assert ids(ctrs.list(label_selector={"tier": "web"})) == sorted([a, c])
    assert ids(ctrs.list(label_selector={"tier": "web"}, pod_sandbox_id=pod2)) == [c]
    item = [x for x in ctrs.list() if x.id == a][0]
    assert item.pod_sandbox_id == pod1 and item.metadata.name == "a"
    assert item.image.image == ctrs.image_ref and item.image_ref == ctrs.image_id
    assert item.state == pb.CONTAINER_RUNNING and dict(item.labels) == {"tier": "web"}


def test_remove_pod_removes_its_containers(ctrs):
    pod = ctrs.run_pod("podrm")
    ctrs.run(pod, "a", command=SLEEP)
    ctrs.create(pod, "b", command=SLEEP)
    ctrs.rt.StopPodSandbox(ctrs.pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    assert all(c.state == ctrs.pb.CONTAINER_EXITED for c in ctrs.list())
    ctrs.rt.RemovePodSandbox(ctrs.pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    del ctrs.pods[pod]
    assert list(ctrs.list()) == []
    wait_until(lambda: ctrs.container_dirs() == [], 10, what="container directories to go")
    ctrs.nothing_left()


@pytest.mark.parametrize("delay", [0, 0.05, 0.2])
def test_create_racing_pod_stop_and_remove(ctrs, delay):
    """StopPodSandbox while a CreateContainer is in flight: the create fails with
    FAILED_PRECONDITION (or finished first and its container was stopped), never a
    CREATED container in a stopped pod; after RemovePodSandbox nothing is left."""
    pb = ctrs.pb
    pod = ctrs.run_pod("race")
    fut = ctrs.rt.CreateContainer.future(
        pb.CreateContainerRequest(pod_sandbox_id=pod, config=ctrs.config("racer", command=SLEEP),
                                  sandbox_config=ctrs.pods[pod]), timeout=CALL_TIMEOUT)
    time.sleep(delay)
    ctrs.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    try:
        cid = fut.result().container_id
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
        cid = None
    states = {c.id: c.state for c in ctrs.list()}
    assert list(states) == ([cid] if cid else []), states
    assert all(s == pb.CONTAINER_EXITED for s in states.values()), states
    ctrs.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    del ctrs.pods[pod]
    wait_until(lambda: ctrs.container_dirs() == [], 10, what="container directories to go")
    ctrs.nothing_left()
    assert mounts_under(ctrs.d.root) == []
    assert mounts_under(os.path.join(ctrs.d.state, "ctr")) == []
    assert keeper_pids(ctrs.d.state) == []


# --------------------------------------------------------------------------
# Restarts
# --------------------------------------------------------------------------

def test_containers_survive_a_restart(ctrs):
    pb = ctrs.pb
    pod = ctrs.run_pod("survive")
    cid = ctrs.run(pod, "long", command=SLEEP)
    pid = ctrs.info(cid)["pid"]
    ctrs.d.close_channels()
    assert ctrs.d.stop() == 0
    os.kill(pid, 0)  # still running
    ctrs.d.start()
    st = ctrs.status(cid).status
    assert st.state == pb.CONTAINER_RUNNING
    assert ctrs.out(cid, "echo", "alive").strip() == "alive"
    ctrs.stop(cid, timeout=0)
    st = ctrs.status(cid).status
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 137


def test_exit_while_the_daemon_is_down(ctrs):
    pb = ctrs.pb
    pod = ctrs.run_pod("downexit")
    cid = ctrs.run(pod, "short", command=["sh", "-c", "sleep 2; exit 7"])
    ctrs.d.close_channels()
    assert ctrs.d.stop() == 0
    time.sleep(3)
    ctrs.d.start()
    st = ctrs.status(cid).status
    assert st.state == pb.CONTAINER_EXITED
    assert st.exit_code == 7 and st.reason == "Error"


def test_restart_after_sigkill(ctrs):
    """kill -9 of the daemon: records and keepers are enough to carry on."""
    pb = ctrs.pb
    pod = ctrs.run_pod("killed")
    cid = ctrs.run(pod, "long", command=SLEEP)
    created = ctrs.create(pod, "idle", command=SLEEP)
    ctrs.d.close_channels()
    ctrs.d.stop(sig=signal.SIGKILL)
    ctrs.d.start()
    assert ctrs.state(cid) == pb.CONTAINER_RUNNING
    assert ctrs.state(created) == pb.CONTAINER_CREATED
    ctrs.start(created)
    assert ctrs.out(created, "echo", "late").strip() == "late"
    ctrs.stop(cid, timeout=0)
    assert ctrs.status(cid).status.exit_code == 137


def test_keeper_killed_means_unknown(ctrs):
    """SIGKILL to the keeper loses the exit record: the container is UNKNOWN until stopped."""
    pb = ctrs.pb
    pod = ctrs.run_pod("lost")
    cid = ctrs.run(pod, "orphan", command=SLEEP)
    info = ctrs.info(cid)
    os.kill(info["keeperPid"], signal.SIGKILL)
    wait_until(lambda: ctrs.state(cid) == pb.CONTAINER_UNKNOWN, 10, what="UNKNOWN")
    st = ctrs.status(cid).status
    assert st.reason == "Unknown"
    os.kill(info["pid"], 0)  # the container itself still runs
    ctrs.stop(cid, timeout=0)
    assert ctrs.state(cid) == pb.CONTAINER_EXITED
    wait_until(lambda: not os.path.exists("/proc/%d" % info["pid"])
               or open("/proc/%d/stat" % info["pid"]).read().split()[2] == "Z", 10,
               what="the container's init to die")
    ctrs.remove(cid)
    ctrs.nothing_left()


def test_shutdown_with_calls_in_flight(ctrs):
    """SIGTERM while a StopContainer and an ExecSync wait: the daemon still exits 0 (and,
    under sanitizers, without leaks); the container carries on and is stopped afterwards."""
    pod = ctrs.run_pod("inflight")
    cid = ctrs.run(pod, "stubborn", command=["sh", "-c", "trap '' TERM; sleep 1000"])
    stop = ctrs.rt.StopContainer.future(
        ctrs.pb.StopContainerRequest(container_id=cid, timeout=60), timeout=60)
    ex = ctrs.rt.ExecSync.future(ctrs.pb.ExecSyncRequest(container_id=cid, cmd=["sleep", "60"]),
                                 timeout=60)
    time.sleep(0.5)
    assert ctrs.d.stop() == 0
    for f in (stop, ex):
        with pytest.raises(grpc.RpcError):
            f.result()
    ctrs.d.close_channels()
    ctrs.d.start()
    assert ctrs.state(cid) == ctrs.pb.CONTAINER_RUNNING
    ctrs.stop(cid, timeout=0)


def test_leftovers_of_an_unfinished_create_are_removed(ctrs):
    """A create cut short by a crash leaves directories without a record: start-up removes
    them."""
    ghost = "ab" * 32
    root_dir = os.path.join(ctrs.d.root, "containers", ghost)
    state_dir = os.path.join(ctrs.d.state, "ctr", ghost)
    for p in (os.path.join(root_dir, "upper", "etc"), os.path.join(root_dir, "work"), state_dir):
        os.makedirs(p)
    ctrs.d.close_channels()
    assert ctrs.d.stop() == 0
    ctrs.d.start()
    wait_until(lambda: not os.path.exists(root_dir) and not os.path.exists(state_dir), 10,
               what="the leftovers to be removed")


def test_image_removed_while_a_container_uses_it(ctrs):
    pod = ctrs.run_pod("gc")
    cid = ctrs.run(pod, "user", command=SLEEP)
    ctrs.d.image.RemoveImage(ctrs.pb.RemoveImageRequest(image=ctrs.pb.ImageSpec(
        image=ctrs.image_id)), timeout=30)
    layers = os.listdir(os.path.join(ctrs.d.root, "layers"))
    assert layers, "the container's layer was collected"
    assert ctrs.out(cid, "cat", "/etc/tinycri-image").strip() == "busybox"
    ctrs.remove(cid)


def test_many_containers_at_once(ctrs):
    import concurrent.futures
    pod = ctrs.run_pod("many")
    n = 8
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        cids = list(ex.map(lambda i: ctrs.run(pod, "m%d" % i, command=SLEEP), range(n)))
        outs = list(ex.map(lambda c: ctrs.out(c, "hostname").strip(), cids))
        assert outs == ["many"] * n
        list(ex.map(lambda c: ctrs.stop(c, timeout=0), cids))
        list(ex.map(ctrs.remove, cids))
    ctrs.nothing_left()


# --------------------------------------------------------------------------
# Runtime handlers
# --------------------------------------------------------------------------

def test_status_lists_runtime_handlers(ctrs):
    resp = ctrs.d.status(verbose=True)
    conds = {c.type: c for c in resp.status.conditions}
    assert conds["RuntimeReady"].status is True
    names = {h.name for h in resp.runtime_handlers}
    assert {"", "runc", "crun"} <= names
    runtimes = json.loads(resp.info["runtimes"])
    assert runtimes["runc"]["usable"] is True
    assert runtimes["runc"]["version"].startswith("runc version")


def test_crun_handler(ctrs):
    why = ensure_hugetlb_v1()
    if why:
        pytest.skip("hugetlb cannot be mounted on cgroup v1 for crun: %s" % why)
    runtimes = json.loads(ctrs.d.status(verbose=True).info["runtimes"])
    assert runtimes["crun"]["usable"] is True, runtimes["crun"]
    pod = ctrs.run_pod("crunpod", handler="crun")
    cid = ctrs.run(pod, "x", command=SLEEP)
    assert ctrs.info(cid)["runtime"] == "crun"
    assert ctrs.out(cid, "hostname").strip() == "crunpod"
    ctrs.stop(cid, timeout=0)
    assert ctrs.status(cid).status.exit_code == 137


def test_keeper_and_daemon_memory(ctrs):
    """Figures for the report: keeper RssAnon, and the daemon's with N containers."""
    pod = ctrs.run_pod("mem")
    base = rss_anon_kib(ctrs.d.pid)
    n = 10
    cids = [ctrs.run(pod, "m%d" % i, command=SLEEP) for i in range(n)]
    keepers = [ctrs.info(c)["keeperPid"] for c in cids]
    k_rss = [rss_anon_kib(p) for p in keepers]
    d_rss = rss_anon_kib(ctrs.d.pid)
    print("keeper RssAnon KiB: %s; tinycrid RssAnon: %d KiB idle pod, %d KiB with %d containers"
          % (k_rss, base, d_rss, n))
    if is_sanitized(ctrs.d.binary):
        pytest.skip("memory figures are meaningless under sanitizers")
    assert max(k_rss) <= 256
    assert d_rss < base + 4 * 1024


def test_unusable_default_handler(daemon, api, pod_network, pushed_images):
    """A default handler that cannot run: Status says RuntimeNotReady with the reason, and
    CreateContainer refuses with FAILED_PRECONDITION."""
    d = daemon(start=False)
    c = Ctrs(d, api, pushed_images)
    d.write_cni("10-test.conflist", conflist(c.ipam_dir))
    d.write_config(daemon_config(pushed_images, {
        "runtime": {"default_runtime": "broken"},
        "runtime.broken": {"path": "/nonexistent/oci-runtime"}}))
    d.start()
    cond = {x.type: x for x in d.status().status.conditions}["RuntimeReady"]
    assert cond.status is False
    assert cond.reason == "RuntimeNotReady"
    assert "broken" in cond.message and "/nonexistent/oci-runtime" in cond.message
    c.pull()
    try:
        pod = c.run_pod("broken")
    except grpc.RpcError:
        return  # refusing the pod is fine too
    e = c.create_fails(pod, "x", command=SLEEP)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    assert "/nonexistent/oci-runtime" in e.details()
    c.nothing_left()
    c.cleanup()
