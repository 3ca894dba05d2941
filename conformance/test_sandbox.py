# SPDX-License-Identifier: Apache-2.0
"""Pod sandboxes as kubelet sees them: RunPodSandbox, PodSandboxStatus,
ListPodSandbox, StopPodSandbox and RemovePodSandbox against a real tinycrid
with real CNI plugins (/usr/lib/cni: bridge, host-local, portmap).

Pods join a bridge of their own, tc-cri<N> with subnet 10.89.<N>.0/24 inside
10.89.0.0/16 (N unique to the test session; ipMasq off). While the module
runs, `iptables -I FORWARD -s 10.89.<N>.0/24 ! -o tc-cri<N> -j DROP` keeps pod
traffic on this machine; the rule and the bridge are removed at the end. Host
ports are published on 127.0.0.1 only. Every test removes its pods,
stops its daemon and then checks that nothing (mount, namespace file,
pod-init process) is left. Needs root.
"""
import concurrent.futures
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time

import grpc
import pytest

from conftest import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pods need root (namespaces, CNI)")

POD_RANGE = "10.89.0.0/16"
NETWORK = "tinycri-sandbox-test"
RUN_TIMEOUT = 60.0


def sh(*argv, check=True, **kw):
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, **kw)


def session_slot():
    """A number for this test session's bridge, subnet and host ports, so that sessions
    running side by side (several engineers, one machine) do not share them."""
    base = os.getpid() % 200
    for i in range(200):
        n = 20 + (base + i) % 200
        if sh("ip", "link", "show", "tc-cri%d" % n, check=False).returncode != 0:
            return n
    return 20 + base


SLOT = session_slot()
BRIDGE = "tc-cri%d" % SLOT                 # at most 15 bytes
SUBNET = "10.89.%d.0/24" % SLOT            # inside POD_RANGE
HOST_PORT = 18000 + SLOT                   # published on 127.0.0.1 only
HOST_PORT_2 = 19000 + SLOT
FORWARD_RULE = ["FORWARD", "-s", SUBNET, "!", "-o", BRIDGE, "-j", "DROP"]


PORTMAP_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")
PORTMAP_JUMPS = (
    ["PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"],
    ["OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"],
    ["POSTROUTING", "-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j",
     "CNI-HOSTPORT-MASQ"],
)


def nat_chain_exists(chain):
    return sh("iptables", "-t", "nat", "-S", chain, check=False).returncode == 0


def remove_portmap_chains():
    """Remove the nat chains the portmap plugin made, if nothing else uses them."""
    rules = sh("iptables", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT", check=False).stdout
    if any(line.startswith("-A ") for line in rules.splitlines()):
        return  # somebody's port mappings are still there
    for jump in PORTMAP_JUMPS:
        while sh("iptables", "-t", "nat", "-D", *jump, check=False).returncode == 0:
            pass
    for chain in PORTMAP_CHAINS:
        sh("iptables", "-t", "nat", "-F", chain, check=False)
    for chain in PORTMAP_CHAINS:
        sh("iptables", "-t", "nat", "-X", chain, check=False)


@pytest.fixture(scope="module")
def pod_network():
    """The FORWARD guard for the module; afterwards remove it, the bridge, and the portmap
    plugin's nat chains when they were made here."""
    had_portmap_chains = nat_chain_exists("CNI-HOSTPORT-DNAT")
    sh("iptables", "-I", *FORWARD_RULE)
    try:
        yield
    finally:
        while sh("iptables", "-D", *FORWARD_RULE, check=False).returncode == 0:
            pass
        if sh("ip", "link", "show", BRIDGE, check=False).returncode == 0:
            sh("ip", "link", "del", BRIDGE, check=False)
        if not had_portmap_chains:
            remove_portmap_chains()


def conflist(ipam_dir, first=None):
    plugins = [
        {
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": ipam_dir,
            },
        },
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ]
    if first:
        plugins[0]["type"] = first
    return {"cniVersion": "1.0.0", "name": NETWORK, "plugins": plugins}


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f
                if line.split()[4] == path or line.split()[4].startswith(path + "/")]


def pod_init_pids(ids=None):
    """Pids of the tinycri-keeper --pod-init processes (of the sandboxes in ids when given:
    other test sessions may run pods on this machine at the same time)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[0].endswith(b"tinycri-keeper") and argv[1] == b"--pod-init":
            pod_id = argv[3].decode() if len(argv) > 3 and argv[2] == b"--id" else None
            if ids is None or pod_id in ids:
                pids.append(int(entry))
    return pids


class Pods:
    """A daemon with the pod network configured, and helpers to make pods."""

    def __init__(self, d, api):
        self.d = d
        self.api = api
        self.pb = api.pb2
        self.ipam_dir = os.path.join(d.tmp, "ipam")
        self.bin_dir = os.path.join(d.tmp, "bin")
        os.mkdir(self.bin_dir)
        self.made = set()

    @property
    def rt(self):
        return self.d.runtime

    def config(self, name, uid=None, namespace="default", attempt=0, hostname=None, labels=None,
               annotations=None, dns=None, ports=(), network="POD", pid="CONTAINER", ipc="POD",
               sysctls=None, cgroup_parent=""):
        pb = self.pb
        mode = {"POD": pb.POD, "CONTAINER": pb.CONTAINER, "NODE": pb.NODE, "TARGET": pb.TARGET}
        cfg = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid or "uid-" + name,
                                           namespace=namespace, attempt=attempt),
            hostname=name if hostname is None else hostname,
            log_directory="/var/log/pods/%s" % name,
            labels=labels or {},
            annotations=annotations or {},
            port_mappings=[pb.PortMapping(**p) for p in ports],
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=cgroup_parent,
                sysctls=sysctls or {},
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=mode[network], pid=mode[pid],
                                                         ipc=mode[ipc]))))
        if dns is not None:
            cfg.dns_config.CopyFrom(pb.DNSConfig(**dns))
        return cfg

    def run(self, name=None, handler="", config=None, timeout=RUN_TIMEOUT, **kw):
        cfg = config or self.config(name, **kw)
        resp = self.rt.RunPodSandbox(self.pb.RunPodSandboxRequest(config=cfg,
                                                                  runtime_handler=handler),
                                     timeout=timeout)
        assert len(resp.pod_sandbox_id) == 64
        self.made.add(resp.pod_sandbox_id)
        return resp.pod_sandbox_id

    def status(self, pod_id, verbose=False):
        return self.rt.PodSandboxStatus(
            self.pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose), timeout=10)

    def info(self, pod_id):
        return json.loads(self.status(pod_id, verbose=True).info["info"])

    def list(self, **filt):
        f = self.pb.PodSandboxFilter(**filt) if filt else None
        return self.rt.ListPodSandbox(self.pb.ListPodSandboxRequest(filter=f), timeout=10).items

    def stop(self, pod_id):
        self.rt.StopPodSandbox(self.pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)

    def remove(self, pod_id):
        self.rt.RemovePodSandbox(self.pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id),
                                 timeout=60)

    def netns(self, pod_id, kind="net"):
        return os.path.join(self.d.state, "netns", pod_id, kind)

    def pod_dir(self, pod_id):
        return os.path.join(self.d.state, "sandboxes", pod_id)

    def record(self, pod_id):
        return os.path.join(self.d.root, "sandboxes", pod_id + ".json")

    def leases(self):
        """IP addresses host-local holds for the network."""
        path = os.path.join(self.ipam_dir, NETWORK)
        if not os.path.isdir(path):
            return set()
        out = set()
        for name in os.listdir(path):
            try:
                ipaddress.ip_address(name)
                out.add(name)
            except ValueError:
                pass
        return out

    def in_netns(self, pod_id, *argv, **kw):
        return sh("nsenter", "--net=" + self.netns(pod_id), *argv, **kw)

    def assert_gone(self, pod_id):
        assert not os.path.exists(os.path.join(self.d.state, "netns", pod_id))
        assert not os.path.exists(self.pod_dir(pod_id))
        assert not os.path.exists(self.record(pod_id))
        assert not os.path.exists(os.path.join(self.d.state, "cni-cache", pod_id + ".json"))
        assert [m for m in mounts_under(self.d.state) if pod_id in m] == []
        with pytest.raises(grpc.RpcError) as ei:
            self.status(pod_id)
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND

    def nothing_left(self):
        """No pod record, no pod files, no mount under the state dir but the netns dir itself."""
        assert os.listdir(os.path.join(self.d.root, "sandboxes")) == []
        assert os.listdir(os.path.join(self.d.state, "sandboxes")) == []
        netns = os.path.join(self.d.state, "netns")
        assert not os.path.isdir(netns) or os.listdir(netns) == []
        assert [m for m in mounts_under(self.d.state) if m != netns] == []
        assert self.leases() == set()
        assert list(self.list()) == []


@pytest.fixture
def pods(daemon, api, pod_network):
    """A started daemon with the bridge network; every pod removed and nothing left after."""
    d = daemon(start=False)
    p = Pods(d, api)
    d.write_cni("10-test.conflist", conflist(p.ipam_dir))
    d.write_config({"cni": {"bin_dirs": p.bin_dir + ":/usr/lib/cni"}})
    d.start()
    yield p
    problems = []
    records = os.path.join(d.root, "sandboxes")
    logs = "".join(d.history) + d.stderr_text()
    known = set(p.made) | set(re.findall(r"creating sandbox sandbox=([0-9a-f]{64})", logs)) | \
        {n[:-5] for n in (os.listdir(records) if os.path.isdir(records) else [])
         if n.endswith(".json")}
    if d.alive():
        try:
            for item in p.list():
                known.add(item.id)
                p.remove(item.id)
        except grpc.RpcError as e:
            problems.append("removing pods at teardown: %s %s" % (e.code(), e.details()))
        rc = d.stop()
        if rc != 0:
            problems.append("tinycrid exited with status %d" % rc)
    left = [m for m in mounts_under(d.tmp)]
    for m in sorted(left, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)
    strays = set(pod_init_pids(known))
    for pid in strays:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if left:
        problems.append("mounts left under %s: %s" % (d.tmp, left))
    if strays:
        problems.append("pod-init processes left: %s" % sorted(strays))
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def ip_in_subnet(ip):
    return (ipaddress.ip_address(ip) in ipaddress.ip_network(SUBNET)
            and ipaddress.ip_address(ip) in ipaddress.ip_network(POD_RANGE))


def read(path):
    with open(path) as f:
        return f.read()


# --------------------------------------------------------------------------
# RunPodSandbox and PodSandboxStatus
# --------------------------------------------------------------------------

def test_run_pod_is_ready_with_an_ip(pods):
    before = time.time_ns()
    pod = pods.run("web", labels={"app": "web"}, annotations={"a/b": "c"}, handler="runc")
    st = pods.status(pod)
    s = st.status
    assert s.id == pod
    assert s.state == pods.pb.SANDBOX_READY
    assert s.metadata.name == "web" and s.metadata.namespace == "default"
    assert s.metadata.uid == "uid-web" and s.metadata.attempt == 0
    assert before <= s.created_at <= time.time_ns()
    assert ip_in_subnet(s.network.ip), s.network.ip
    assert list(s.network.additional_ips) == []
    assert dict(s.labels) == {"app": "web"}
    assert dict(s.annotations) == {"a/b": "c"}
    assert s.runtime_handler == "runc"
    opts = s.linux.namespaces.options
    assert (opts.network, opts.pid, opts.ipc) == (pods.pb.POD, pods.pb.CONTAINER, pods.pb.POD)
    assert st.info == {}
    assert st.timestamp > 0
    # The address is on eth0 inside the pod's network namespace, lo is up.
    out = pods.in_netns(pod, "ip", "-4", "-o", "addr").stdout
    assert "eth0" in out and s.network.ip + "/24" in out
    assert "127.0.0.1/8" in out
    assert s.network.ip in pods.leases()


def test_pod_files_and_namespaces(pods):
    dns = {"servers": ["10.96.0.10", "10.96.0.11"],
           "searches": ["default.svc.cluster.local", "svc.cluster.local"],
           "options": ["ndots:5", "timeout:2"]}
    pod = pods.run("files", hostname="files-host", dns=dns)
    ip = pods.status(pod).status.network.ip
    info = pods.info(pod)
    assert info["id"] == pod and info["state"] == "SANDBOX_READY"
    assert info["runtimeHandler"] == ""
    assert info["ips"] == [ip]
    assert info["networkReady"] is True
    for kind in ("net", "ipc", "uts"):
        path = pods.netns(pod, kind)
        assert info[kind + "Namespace"] == path
        assert path in mounts_under(pods.d.state)
    assert info["pid"] == 0 and info["pidNamespace"] is None  # pid CONTAINER: no pod-init
    # UTS namespace carries the hostname; the pod's files are in its state dir.
    assert sh("nsenter", "--uts=" + pods.netns(pod, "uts"), "hostname").stdout.strip() == \
        "files-host"
    assert sh("hostname").stdout.strip() != "files-host"
    pdir = pods.pod_dir(pod)
    assert info["hostnamePath"] == pdir + "/hostname"
    assert read(pdir + "/hostname") == "files-host\n"
    assert read(info["hostsPath"]) == ("127.0.0.1 localhost\n"
                                       "::1 localhost ip6-localhost ip6-loopback\n"
                                       "%s files-host\n" % ip)
    assert read(info["resolvPath"]) == ("nameserver 10.96.0.10\nnameserver 10.96.0.11\n"
                                        "search default.svc.cluster.local svc.cluster.local\n"
                                        "options ndots:5 timeout:2\n")
    # /dev/shm: a 64 MiB tmpfs, nosuid,nodev,noexec, mode 1777.
    shm = info["shmPath"]
    assert shm == pdir + "/shm"
    line = [l for l in read("/proc/self/mountinfo").splitlines() if l.split()[4] == shm]
    assert len(line) == 1
    fields = line[0].split()
    assert {"nosuid", "nodev", "noexec"} <= set(fields[5].split(","))
    assert fields[fields.index("-") + 1] == "tmpfs"
    assert "size=65536k" in fields[-1]
    assert stat.S_IMODE(os.stat(shm).st_mode) == 0o1777
    # The network namespace is not ours, and IPC is separate too.
    assert os.stat(pods.netns(pod)).st_ino != os.stat("/proc/self/ns/net").st_ino
    assert os.stat(pods.netns(pod, "ipc")).st_ino != os.stat("/proc/self/ns/ipc").st_ino


def test_hostname_defaults_to_pod_name_and_resolv_conf_to_the_hosts(pods):
    pod = pods.run("plain", hostname="")
    info = pods.info(pod)
    assert read(info["hostnamePath"]) == "plain\n"
    assert sh("nsenter", "--uts=" + pods.netns(pod, "uts"), "hostname").stdout.strip() == "plain"
    host_resolv = read("/etc/resolv.conf") if os.path.exists("/etc/resolv.conf") else ""
    assert read(info["resolvPath"]) == host_resolv


def test_host_network_pod(pods):
    pod = pods.run("hostnet", network="NODE", ipc="NODE", hostname="")
    s = pods.status(pod).status
    assert s.state == pods.pb.SANDBOX_READY
    assert s.network.ip == ""
    assert s.linux.namespaces.options.network == pods.pb.NODE
    info = pods.info(pod)
    assert info["netNamespace"] is None and info["utsNamespace"] is None
    assert info["ipcNamespace"] is None
    assert info["shmPath"] == "/dev/shm"
    assert not os.path.exists(pods.netns(pod, "net"))
    assert read(info["hostsPath"]) == read("/etc/hosts")
    assert read(info["hostnamePath"]) == sh("hostname").stdout.strip() + "\n"
    assert pods.leases() == set()
    pods.stop(pod)
    pods.remove(pod)
    pods.assert_gone(pod)


def test_host_network_pod_with_own_ipc(pods):
    pod = pods.run("hostnet-ipc", network="NODE")
    info = pods.info(pod)
    assert info["netNamespace"] is None
    assert info["ipcNamespace"] == pods.netns(pod, "ipc")
    assert info["shmPath"] == pods.pod_dir(pod) + "/shm"
    pods.remove(pod)
    pods.assert_gone(pod)


def test_sysctls_are_set_in_the_pod(pods):
    pod = pods.run("sysctl", sysctls={"net.ipv4.ip_unprivileged_port_start": "80",
                                      "kernel.shmmni": "1024"})
    out = pods.in_netns(pod, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start").stdout
    assert out.strip() == "80"
    out = sh("nsenter", "--ipc=" + pods.netns(pod, "ipc"), "cat", "/proc/sys/kernel/shmmni").stdout
    assert out.strip() == "1024"


def test_pod_pid_namespace_has_a_pod_init(pods):
    pod = pods.run("pidns", pid="POD")
    info = pods.info(pod)
    pid = info["pid"]
    assert pid > 0
    assert info["pidNamespace"] == "/proc/%d/ns/pid" % pid
    assert pid in pod_init_pids()
    # PID 1 of its own namespace.
    nspid = [l for l in read("/proc/%d/status" % pid).splitlines() if l.startswith("NSpid:")]
    assert nspid[0].split()[1:] == [str(pid), "1"]
    assert os.stat("/proc/%d/ns/pid" % pid).st_ino != os.stat("/proc/self/ns/pid").st_ino
    # It shrugs off the signals it can ignore.
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    time.sleep(0.2)
    assert os.path.exists("/proc/%d" % pid)
    assert pods.status(pod).status.state == pods.pb.SANDBOX_READY
    # Small: a pause-like process (a sanitizer build's shadow memory aside).
    rss = [l for l in read("/proc/%d/status" % pid).splitlines() if l.startswith("VmRSS:")]
    if "libasan" not in read("/proc/%d/maps" % pid):
        assert int(rss[0].split()[1]) < 1024, rss
    pods.stop(pod)
    wait_until(lambda: not os.path.exists("/proc/%d/ns" % pid) or pid not in pod_init_pids(),
               5, what="pod-init to die on Stop")
    info = pods.info(pod)
    assert info["pid"] == 0 and info["pidNamespace"] is None


def test_dead_pod_init_makes_the_pod_not_ready(pods):
    pod = pods.run("pidns-dies", pid="POD")
    pid = pods.info(pod)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: pods.status(pod).status.state == pods.pb.SANDBOX_NOTREADY, 5,
               what="the pod to become NOTREADY")
    assert pods.info(pod)["pid"] == 0
    # The network is still set up until kubelet stops the pod.
    assert pods.info(pod)["networkReady"] is True
    pods.stop(pod)
    assert pods.leases() == set()


def test_default_namespace_options_mean_pod(pods, api):
    pb = api.pb2
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="bare", uid="u-bare",
                                                             namespace="ns"))
    pod = pods.run(config=cfg)
    info = pods.info(pod)
    assert info["pid"] > 0  # pid POD is the protobuf default
    assert info["netNamespace"] and info["ipcNamespace"]
    assert read(info["hostnamePath"]) == "bare\n"


# --------------------------------------------------------------------------
# Validation: errors leave nothing behind
# --------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["name", "uid", "namespace"])
def test_metadata_is_required(pods, field):
    cfg = pods.config("meta")
    setattr(cfg.metadata, field, "")
    with pytest.raises(grpc.RpcError) as ei:
        pods.run(config=cfg)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in ei.value.details()
    pods.nothing_left()


def test_missing_config_is_invalid(pods):
    with pytest.raises(grpc.RpcError) as ei:
        pods.rt.RunPodSandbox(pods.pb.RunPodSandboxRequest(), timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_runtime_handler(pods):
    with pytest.raises(grpc.RpcError) as ei:
        pods.run("handler", handler="no-such-handler")
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown runtime handler" in ei.value.details()
    pods.nothing_left()


@pytest.mark.parametrize("kw,what", [
    ({"hostname": "bad host"}, "hostname"),
    ({"hostname": "x" * 65}, "hostname"),
    ({"dns": {"servers": ["1.1.1.1\nnameserver 6.6.6.6"]}}, "dns server"),
    ({"dns": {"options": [""]}}, "dns option"),
    ({"ports": [{"container_port": 80, "host_port": 70000}]}, "port mapping"),
    ({"ports": [{"container_port": 0, "host_port": 8080}]}, "port mapping"),
    ({"ports": [{"container_port": 80, "host_port": 8080, "host_ip": "nowhere"}]}, "host_ip"),
    ({"sysctls": {"kernel.hostname": "x"}}, "sysctl"),
    ({"sysctls": {"net.ipv4.ip_forward": "1"}, "network": "NODE"}, "sysctl"),
    ({"network": "CONTAINER"}, "network namespace mode"),
    ({"ipc": "TARGET"}, "ipc namespace mode"),
    ({"cgroup_parent": "/kubepods/../../etc"}, "cgroup parent"),
    ({"annotations": {"kubernetes.io/ingress-bandwidth": "lots"}}, "ingress-bandwidth"),
])
def test_invalid_config_is_refused(pods, kw, what):
    with pytest.raises(grpc.RpcError) as ei:
        pods.run("invalid", **kw)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value.details()
    assert what in ei.value.details()
    pods.nothing_left()


def test_systemd_driver_wants_a_slice(daemon, api, pod_network):
    d = daemon(config={"runtime": {"cgroup_driver": "systemd"}}, start=False)
    p = Pods(d, api)
    d.write_cni("10-test.conflist", conflist(p.ipam_dir))
    d.start()
    with pytest.raises(grpc.RpcError) as ei:
        p.run("slice", cgroup_parent="/kubepods/burstable", network="NODE")
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "slice" in ei.value.details()
    pod = p.run("slice", cgroup_parent="kubepods-burstable.slice", network="NODE", ipc="NODE")
    assert p.info(pod)["cgroupParent"] == "kubepods-burstable.slice"
    p.remove(pod)
    p.nothing_left()


def test_same_name_and_attempt_is_already_exists(pods):
    pod = pods.run("twice")
    with pytest.raises(grpc.RpcError) as ei:
        pods.run("twice")
    assert ei.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # Still reserved while NOTREADY; another attempt is fine.
    pods.stop(pod)
    with pytest.raises(grpc.RpcError) as ei:
        pods.run("twice")
    assert ei.value.code() == grpc.StatusCode.ALREADY_EXISTS
    again = pods.run("twice", attempt=1)
    assert again != pod
    pods.remove(pod)
    third = pods.run("twice")  # the name is free once removed
    assert pods.status(third).status.state == pods.pb.SANDBOX_READY


# --------------------------------------------------------------------------
# CNI failures
# --------------------------------------------------------------------------

def test_no_cni_config_is_failed_precondition(pods):
    os.unlink(os.path.join(pods.d.cni_dir, "10-test.conflist"))
    with pytest.raises(grpc.RpcError) as ei:
        pods.run("nonet")
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert ei.value.details().startswith("network plugin not ready: ")
    pods.nothing_left()
    # Host-network pods need no CNI.
    pod = pods.run("hostnet-nonet", network="NODE")
    assert pods.status(pod).status.state == pods.pb.SANDBOX_READY


def test_missing_cni_plugin_is_failed_precondition(pods):
    os.unlink(os.path.join(pods.d.cni_dir, "10-test.conflist"))
    pods.d.write_cni("10-test.conflist", conflist(pods.ipam_dir, first="no-such-plugin"))
    with pytest.raises(grpc.RpcError) as ei:
        pods.run("noplugin")
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no-such-plugin" in ei.value.details()
    pods.nothing_left()


def write_plugin(pods, name, script):
    path = os.path.join(pods.bin_dir, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + script)
    os.chmod(path, 0o755)
    return path


def test_failing_cni_plugin_leaves_nothing(pods):
    write_plugin(pods, "failing", """
if [ "$CNI_COMMAND" = ADD ]; then
    echo '{"cniVersion":"1.0.0","code":100,"msg":"fake plugin failure","details":"on purpose"}'
    exit 1
fi
exit 0
""")
    os.unlink(os.path.join(pods.d.cni_dir, "10-test.conflist"))
    conf = conflist(pods.ipam_dir)
    conf["plugins"].insert(1, {"type": "failing"})  # after bridge: its ADD must be rolled back
    pods.d.write_cni("10-test.conflist", conf)
    with pytest.raises(grpc.RpcError) as ei:
        pods.run("cnifail", pid="POD")
    assert ei.value.code() == grpc.StatusCode.INTERNAL, ei.value.details()
    assert "fake plugin failure" in ei.value.details()
    pods.nothing_left()  # and the fixture checks that the pod-init is gone


def test_failing_sysctl_after_cni_add_is_unwound(pods):
    with pytest.raises(grpc.RpcError) as ei:
        pods.run("badsysctl", pid="POD", sysctls={"net.ipv4.no_such_sysctl_here": "1"})
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value.details()
    pods.nothing_left()


def test_failed_undo_keeps_the_pod_not_ready(pods):
    """The CNI DEL of an unwinding fails: the pod stays, NOTREADY, and Remove retries it."""
    marker = os.path.join(pods.d.tmp, "del-may-pass")
    path = os.path.join(pods.bin_dir, "faildel")
    with open(path, "w") as f:
        f.write("""#!/usr/bin/python3
import json, os, sys
conf = json.load(sys.stdin)
if os.environ["CNI_COMMAND"] == "ADD":
    print(json.dumps(conf["prevResult"]))
elif os.environ["CNI_COMMAND"] == "DEL" and not os.path.exists(%r):
    print(json.dumps({"cniVersion": "1.0.0", "code": 100, "msg": "DEL refused"}))
    sys.exit(1)
""" % marker)
    os.chmod(path, 0o755)
    os.unlink(os.path.join(pods.d.cni_dir, "10-test.conflist"))
    conf = conflist(pods.ipam_dir)
    conf["plugins"].append({"type": "faildel"})
    pods.d.write_cni("10-test.conflist", conf)
    with pytest.raises(grpc.RpcError) as ei:
        pods.run("undo", pid="POD", sysctls={"net.ipv4.no_such_sysctl_here": "1"})
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value.details()
    items = pods.list()
    assert len(items) == 1 and items[0].state == pods.pb.SANDBOX_NOTREADY
    pod = items[0].id
    assert pods.info(pod)["networkReady"] is True
    assert pods.info(pod)["pid"] == 0
    with pytest.raises(grpc.RpcError) as ei:
        pods.remove(pod)
    assert "DEL refused" in ei.value.details()
    open(marker, "w").close()
    pods.remove(pod)
    pods.assert_gone(pod)
    pods.nothing_left()


def test_client_cancel_completes_the_pod(pods):
    write_plugin(pods, "slowbridge", 'sleep 1\nexec /usr/lib/cni/bridge "$@"\n')
    os.unlink(os.path.join(pods.d.cni_dir, "10-test.conflist"))
    pods.d.write_cni("10-test.conflist", conflist(pods.ipam_dir, first="slowbridge"))
    with pytest.raises(grpc.RpcError) as ei:
        pods.run("impatient", timeout=0.3)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The operation goes on and completes the pod, as containerd does.
    items = wait_until(lambda: pods.list(), 20, what="the pod to appear")
    assert items[0].metadata.name == "impatient"
    assert items[0].state == pods.pb.SANDBOX_READY
    assert pods.status(items[0].id).status.network.ip
    pods.remove(items[0].id)
    pods.nothing_left()


# --------------------------------------------------------------------------
# ListPodSandbox
# --------------------------------------------------------------------------

def test_list_filters(pods):
    a = pods.run("list-a", labels={"app": "a", "tier": "web"})
    b = pods.run("list-b", labels={"app": "b", "tier": "web"})
    c = pods.run("list-c", labels={"app": "c"}, network="NODE")
    ids = lambda items: sorted(i.id for i in items)  # noqa: E731
    assert ids(pods.list()) == sorted([a, b, c])
    assert ids(pods.list(id=a)) == [a]
    assert ids(pods.list(id=b[:12])) == [b]
    assert ids(pods.list(id="f" * 64)) == []
    assert ids(pods.list(label_selector={"tier": "web"})) == sorted([a, b])
    assert ids(pods.list(label_selector={"tier": "web", "app": "b"})) == [b]
    assert ids(pods.list(label_selector={"tier": "db"})) == []
    pods.stop(b)
    ready = pods.pb.PodSandboxStateValue(state=pods.pb.SANDBOX_READY)
    notready = pods.pb.PodSandboxStateValue(state=pods.pb.SANDBOX_NOTREADY)
    assert ids(pods.list(state=ready)) == sorted([a, c])
    assert ids(pods.list(state=notready)) == [b]
    assert ids(pods.list(state=ready, label_selector={"tier": "web"})) == [a]
    item = [i for i in pods.list() if i.id == a][0]
    assert item.metadata.name == "list-a"
    assert dict(item.labels) == {"app": "a", "tier": "web"}
    assert item.created_at == pods.status(a).status.created_at
    assert item.runtime_handler == ""
    # Status takes a unique prefix too.
    assert pods.status(c[:10]).status.id == c


# --------------------------------------------------------------------------
# StopPodSandbox and RemovePodSandbox
# --------------------------------------------------------------------------

def test_stop_then_remove(pods):
    pod = pods.run("cycle", pid="POD", ports=[{"container_port": 80, "host_port": HOST_PORT_2,
                                               "host_ip": "127.0.0.1"}])
    ip = pods.status(pod).status.network.ip
    assert ip in pods.leases()
    assert "--dport %d " % HOST_PORT_2 in sh("iptables-save", "-t", "nat").stdout
    pods.stop(pod)
    s = pods.status(pod).status
    assert s.state == pods.pb.SANDBOX_NOTREADY
    assert s.network.ip == ""
    assert pods.leases() == set()  # CNI DEL released the address
    assert not os.path.exists(os.path.join(pods.d.state, "cni-cache", pod + ".json"))
    assert [m for m in mounts_under(pods.d.state) if m.endswith("/shm")] == []
    assert "--dport %d " % HOST_PORT_2 not in sh("iptables-save", "-t", "nat").stdout  # portmap DEL
    # Namespaces stay until removal.
    assert os.path.exists(pods.netns(pod))
    pods.stop(pod)  # idempotent
    assert pods.status(pod).status.state == pods.pb.SANDBOX_NOTREADY
    pods.remove(pod)
    pods.assert_gone(pod)
    pods.remove(pod)  # idempotent
    pods.nothing_left()


def test_remove_a_ready_pod_stops_it_first(pods):
    pod = pods.run("remove-ready", pid="POD")
    pid = pods.info(pod)["pid"]
    pods.remove(pod)
    pods.assert_gone(pod)
    wait_until(lambda: pid not in pod_init_pids(), 5, what="pod-init to die")
    pods.nothing_left()


def test_unknown_ids(pods):
    with pytest.raises(grpc.RpcError) as ei:
        pods.stop("0" * 64)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    pods.remove("0" * 64)
    with pytest.raises(grpc.RpcError) as ei:
        pods.status("0" * 64)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    for call in (pods.stop, pods.remove, pods.status):
        with pytest.raises(grpc.RpcError) as ei:
            call("")
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_concurrent_stop_and_remove(pods):
    pod = pods.run("racy", pid="POD")
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        futs = [ex.submit(pods.stop, pod), ex.submit(pods.stop, pod),
                ex.submit(pods.remove, pod), ex.submit(pods.remove, pod)]
        errors = []
        for f in futs:
            try:
                f.result()
            except grpc.RpcError as e:
                errors.append(e.code())
    # Stops queued behind the removal may find the pod gone.
    assert set(errors) <= {grpc.StatusCode.NOT_FOUND}
    pods.assert_gone(pod)
    pods.nothing_left()


# --------------------------------------------------------------------------
# Many pods, traffic between them, host ports
# --------------------------------------------------------------------------

def test_twenty_pods_concurrently(pods):
    names = ["many-%02d" % i for i in range(20)]
    with concurrent.futures.ThreadPoolExecutor(20) as ex:
        ids = list(ex.map(lambda n: pods.run(n, pid="POD" if n[-1] in "02468" else "CONTAINER"),
                          names))
    assert len(set(ids)) == 20
    statuses = [pods.status(i).status for i in ids]
    assert all(s.state == pods.pb.SANDBOX_READY for s in statuses)
    ips = [s.network.ip for s in statuses]
    assert len(set(ips)) == 20 and all(ip_in_subnet(ip) for ip in ips)
    assert pods.leases() == set(ips)
    with concurrent.futures.ThreadPoolExecutor(20) as ex:
        list(ex.map(pods.remove, ids))
    pods.nothing_left()


def test_pods_can_ping_each_other(pods):
    a = pods.run("ping-a")
    b = pods.run("ping-b")
    ip_b = pods.status(b).status.network.ip
    ip_a = pods.status(a).status.network.ip
    r = pods.in_netns(a, "ping", "-c1", "-W2", ip_b, check=False)
    if r.returncode == 127 or "not found" in r.stderr:
        r = pods.in_netns(a, "busybox", "ping", "-c1", "-W2", ip_b, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    r = pods.in_netns(b, "busybox", "ping", "-c1", "-W2", ip_a, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_host_port_reaches_the_pod(pods):
    pod = pods.run("hostport", ports=[{"container_port": 80, "host_port": HOST_PORT,
                                       "host_ip": "127.0.0.1"}])
    listener = subprocess.Popen(
        ["nsenter", "--net=" + pods.netns(pod), "busybox", "sh", "-c",
         "echo hello-from-pod | busybox nc -l -p 80"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: ":0050 " in pods.in_netns(pod, "cat", "/proc/net/tcp",
                                                     "/proc/net/tcp6").stdout, 5,
                   what="the listener in the pod")
        got = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and b"hello-from-pod" not in got:
            try:
                with socket.create_connection(("127.0.0.1", HOST_PORT), timeout=2) as s:
                    s.shutdown(socket.SHUT_WR)
                    while True:
                        chunk = s.recv(100)
                        if not chunk:
                            break
                        got += chunk
            except OSError:
                time.sleep(0.2)
        assert b"hello-from-pod" in got
    finally:
        listener.kill()
        listener.wait()
    pods.remove(pod)
    assert "--dport %d " % HOST_PORT not in sh("iptables-save", "-t", "nat").stdout


# --------------------------------------------------------------------------
# Restart
# --------------------------------------------------------------------------

def test_pods_survive_a_restart(pods):
    a = pods.run("keep-a", pid="POD", labels={"k": "a"})
    b = pods.run("keep-b")
    c = pods.run("keep-c")
    pods.stop(c)
    before = {i: pods.status(i).status for i in (a, b, c)}
    pid = pods.info(a)["pid"]
    assert pods.d.stop() == 0
    # Pods do not depend on the daemon: namespaces and the pod-init stay.
    assert os.path.exists(pods.netns(a)) and pid in pod_init_pids()
    assert pods.netns(a) in mounts_under(pods.d.state)
    pods.d.start()
    for i, old in before.items():
        new = pods.status(i).status
        assert new == old, i
    assert pods.info(a)["pid"] == pid
    ip_b = before[b].network.ip
    r = pods.in_netns(a, "busybox", "ping", "-c1", "-W2", ip_b, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    # After the restart, the pod-init is still watched.
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: pods.status(a).status.state == pods.pb.SANDBOX_NOTREADY, 5,
               what="the pod to become NOTREADY")
    for i in (a, b, c):
        pods.remove(i)
    pods.nothing_left()


def test_restart_after_namespaces_were_lost(pods):
    """As after a reboot: the pinned namespaces and the pod-init are gone."""
    pod = pods.run("lost", pid="POD")
    pid = pods.info(pod)["pid"]
    assert pods.d.stop() == 0
    for kind in ("net", "ipc", "uts"):
        sh("umount", "-l", pods.netns(pod, kind))
    os.kill(pid, signal.SIGKILL)
    pods.d.start()
    s = pods.status(pod).status
    assert s.state == pods.pb.SANDBOX_NOTREADY
    assert pods.info(pod)["pid"] == 0
    assert pods.leases()  # the lease survived the "reboot"
    pods.stop(pod)  # CNI DEL without a network namespace releases it
    assert pods.leases() == set()
    pods.remove(pod)
    pods.nothing_left()


def test_corrupt_record_is_moved_aside(pods):
    pod = pods.run("fine", network="NODE", ipc="NODE")
    assert pods.d.stop() == 0
    bad = os.path.join(pods.d.root, "sandboxes", "a" * 64 + ".json")
    with open(bad, "w") as f:
        f.write("{not json")
    pods.d.start()
    assert [i.id for i in pods.list()] == [pod]
    assert "unreadable sandbox record moved aside" in pods.d.stderr_text()
    assert not os.path.exists(bad)
    aside = os.path.join(pods.d.root, "sandboxes", "corrupt", "a" * 64 + ".json")
    with open(aside) as f:
        assert f.read() == "{not json"
    shutil.rmtree(os.path.dirname(aside))  # nothing_left() wants sandboxes/ empty
    pods.remove(pod)
    pods.nothing_left()
