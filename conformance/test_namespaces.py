# SPDX-License-Identifier: Apache-2.0
"""Pod and container namespace modes with real containers (runc, the `ctrs` fixture of
test_containers.py).

The rule, as containerd's CRI plugin has it: for network (with UTS), IPC and PID a
container's POD and NODE both mean what its pod has (a host-network pod gives the host's
network and UTS namespaces, a host-IPC pod the host's IPC namespace and /dev/shm, pid POD
the pod's shared PID namespace, pid CONTAINER one of the container's own, pid NODE the
host's); a container's pid CONTAINER is always a PID namespace of its own and TARGET the
target container's. Absent namespace options (or `linux: {}`) mean POD.

Each check reads /proc/self/ns/{net,uts,ipc,pid} inside a container through ExecSync and
compares the links with this process's own (the daemon runs in the same namespaces, so
they are "the host's") and with those of a reference container that has its pod's modes
(what kubelet sends). Every pod/container combination is in the unit test
(tests/unit/test_oci_spec.c); here each pod mode meets every container mode.
Needs root.
"""
import json
import os
import socket
import subprocess

import grpc
import pytest

from test_containers import SLEEP, ctrs, pod_network  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

CRICTL = "/work/shared/tools/crictl"
NAMESPACES = ("net", "uts", "ipc", "pid")
READ_NS = "for n in net uts ipc pid; do readlink /proc/self/ns/$n; done"


def host_ns():
    return {n: os.readlink("/proc/self/ns/" + n) for n in NAMESPACES}


def ctr_ns(ctrs, cid):
    links = ctrs.out(cid, "sh", "-c", READ_NS).split()
    assert len(links) == 4, links
    return dict(zip(NAMESPACES, links))


def create_raw(ctrs, pod, cfg):
    """CreateContainer + StartContainer with cfg as it is (no namespace defaults added)."""
    pb = ctrs.pb
    cid = ctrs.rt.CreateContainer(
        pb.CreateContainerRequest(pod_sandbox_id=pod, config=cfg, sandbox_config=ctrs.pods[pod]),
        timeout=60).container_id
    ctrs.start(cid)
    return cid


# The containers each pod gets, besides the reference one: together they give every
# container mode for each namespace (POD, NODE, absent; pid also CONTAINER and TARGET).
CONTAINERS = {
    "a": ("POD", "NODE", "POD"),
    "b": ("NODE", "POD", "CONTAINER"),
    "c": ("NODE", "NODE", "NODE"),
    "d": ("POD", "POD", "TARGET"),
    "e": None,     # a security context without namespace_options
    "f": "empty",  # linux: {}
}


@pytest.mark.parametrize("pod_pid", ["POD", "CONTAINER", "NODE"])
@pytest.mark.parametrize("pod_ipc", ["POD", "NODE"])
@pytest.mark.parametrize("pod_net", ["POD", "NODE"])
def test_pod_and_container_namespace_modes(ctrs, pod_net, pod_ipc, pod_pid):
    pb = ctrs.pb
    mode = {"POD": pb.POD, "CONTAINER": pb.CONTAINER, "NODE": pb.NODE, "TARGET": pb.TARGET}
    name = "ns-%s-%s-%s" % (pod_net, pod_ipc, pod_pid)
    name = name.lower()
    pod = ctrs.run_pod(name, network=pod_net, ipc=pod_ipc, pid=pod_pid,
                       hostname="" if pod_net == "NODE" else None)
    host = host_ns()
    # The reference: what kubelet sends (the pod's modes).
    ref = ctrs.run(pod, "ref", command=SLEEP, namespace_options=pb.NamespaceOption(
        network=mode[pod_net], ipc=mode[pod_ipc], pid=mode[pod_pid]))
    ref_ns = ctr_ns(ctrs, ref)

    # The reference itself: the pod's namespaces, the host's where the pod has NODE.
    for n, pod_mode in (("net", pod_net), ("uts", pod_net), ("ipc", pod_ipc),
                        ("pid", pod_pid)):
        if pod_mode == "NODE":
            assert ref_ns[n] == host[n], (n, ref_ns, host)
        else:
            assert ref_ns[n] != host[n], (n, ref_ns, host)

    seen_pid = {}
    for cname, modes in CONTAINERS.items():
        cfg = ctrs.config(cname, command=SLEEP)
        if modes is None:
            cfg.linux.security_context.ClearField("namespace_options")
            modes = ("POD", "POD", "POD")
        elif modes == "empty":
            cfg.linux.ClearField("security_context")
            assert cfg.HasField("linux")
            modes = ("POD", "POD", "POD")
        else:
            cfg.linux.security_context.namespace_options.CopyFrom(pb.NamespaceOption(
                network=mode[modes[0]], ipc=mode[modes[1]], pid=mode[modes[2]],
                target_id=ref if modes[2] == "TARGET" else ""))
        cid = create_raw(ctrs, pod, cfg)
        got = ctr_ns(ctrs, cid)
        what = "container %s %s in pod %s: %s" % (cname, modes, name, got)
        # network, UTS and IPC: always the pod's (the host's for a NODE pod).
        for n in ("net", "uts", "ipc"):
            assert got[n] == ref_ns[n], what
        want_pid = modes[2]
        if want_pid == "CONTAINER" or (want_pid in ("POD", "NODE") and pod_pid == "CONTAINER"):
            assert got["pid"] != host["pid"] and got["pid"] != ref_ns["pid"], what
            assert got["pid"] not in seen_pid.values(), what
            seen_pid[cname] = got["pid"]
        else:
            # TARGET: the reference's; POD/NODE: the pod's (shared, or the host's).
            assert got["pid"] == ref_ns["pid"], what

    if pod_pid == "POD":
        # The shared namespace really is shared: the reference's sleep is visible.
        assert "sleep 3600" in ctrs.out(ref, "ps", "-o", "args")


def host_hosts():
    with open("/etc/hosts") as f:
        return f.read()


def test_host_network_pod_with_linux_empty(ctrs):
    """The report: a hostNetwork pod, then a container with `linux: {}` (no namespace
    options). It used to fail with "no UTS namespace path for the container"."""
    pod = ctrs.run_pod("hostnet", network="NODE", hostname="")
    cfg = ctrs.config("plain", command=SLEEP)
    cfg.linux.ClearField("security_context")
    cid = create_raw(ctrs, pod, cfg)
    host = host_ns()
    got = ctr_ns(ctrs, cid)
    assert got["net"] == host["net"] and got["uts"] == host["uts"]
    assert got["ipc"] != host["ipc"]
    # What kubelet and containerd give a hostNetwork pod: the node's name and /etc/hosts.
    node = socket.gethostname()
    assert ctrs.out(cid, "hostname").strip() == node
    assert ctrs.out(cid, "cat", "/etc/hostname") == node + "\n"
    assert "HOSTNAME=%s" % node in ctrs.out(cid, "env").splitlines()
    assert ctrs.out(cid, "cat", "/etc/hosts") == host_hosts()


def test_own_network_pod_hostname(ctrs):
    """The counterpart: a pod with its own network has its own name, whatever the
    container asks for (NODE in a container does not reach the host's UTS namespace)."""
    pb = ctrs.pb
    pod = ctrs.run_pod("ownnet")
    cid = ctrs.run(pod, "c", command=SLEEP, namespace_options=pb.NamespaceOption(
        network=pb.NODE, ipc=pb.NODE, pid=pb.CONTAINER))
    assert ctrs.out(cid, "hostname").strip() == "ownnet"
    assert "HOSTNAME=ownnet" in ctrs.out(cid, "env").splitlines()
    host = host_ns()
    got = ctr_ns(ctrs, cid)
    assert got["net"] != host["net"] and got["uts"] != host["uts"]


@pytest.mark.parametrize("field,value", [("network", "CONTAINER"), ("ipc", "TARGET")])
def test_unsupported_container_modes_are_invalid(ctrs, field, value):
    pb = ctrs.pb
    pod = ctrs.run_pod("badmode")
    ns = pb.NamespaceOption(network=pb.POD, ipc=pb.POD, pid=pb.CONTAINER)
    setattr(ns, field, getattr(pb, value))
    e = ctrs.create_fails(pod, "x", command=SLEEP, namespace_options=ns)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert "namespace_options.%s" % field in e.details() and value in e.details()


def test_target_must_be_in_the_same_pod(ctrs):
    pb = ctrs.pb
    one = ctrs.run_pod("one")
    t = ctrs.run(one, "t", command=SLEEP)
    two = ctrs.run_pod("two")
    e = ctrs.create_fails(two, "x", command=SLEEP, namespace_options=pb.NamespaceOption(
        network=pb.POD, ipc=pb.POD, pid=pb.TARGET, target_id=t))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert "target_id" in e.details() and "another pod" in e.details()


# --------------------------------------------------------------------------
# The same report, driven by crictl as the reporter did
# --------------------------------------------------------------------------

def crictl(ctrs, *args):
    sock = "unix://" + ctrs.d.socket
    r = subprocess.run([CRICTL, "--runtime-endpoint", sock, "--image-endpoint", sock,
                        "--timeout", "60s", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "crictl %s: %s" % (" ".join(args), r.stderr)
    return r.stdout.strip()


@pytest.mark.skipif(not os.access(CRICTL, os.X_OK), reason="no crictl at " + CRICTL)
def test_crictl_host_network_pod_with_linux_empty(ctrs):
    tmp = ctrs.d.tmp
    pod_json = os.path.join(tmp, "pod.json")
    ctr_json = os.path.join(tmp, "ctr.json")
    with open(pod_json, "w") as f:
        json.dump({"metadata": {"name": "crictl-hostnet", "namespace": "default",
                                "uid": "uid-crictl-hostnet"},
                   "linux": {"security_context": {"namespace_options": {"network": 2}}}}, f)
    with open(ctr_json, "w") as f:
        json.dump({"metadata": {"name": "plain"}, "image": {"image": ctrs.image_ref},
                   "command": SLEEP, "linux": {}}, f)
    pod = crictl(ctrs, "runp", pod_json)
    ctrs.pods = getattr(ctrs, "pods", {})
    ctrs.pods[pod] = None  # removed by the fixture if the test stops early
    cid = crictl(ctrs, "create", "--no-pull", pod, ctr_json, pod_json)
    crictl(ctrs, "start", cid)
    host = host_ns()
    for n in ("net", "uts"):
        assert crictl(ctrs, "exec", "-s", cid, "readlink", "/proc/self/ns/" + n) == host[n]
    assert crictl(ctrs, "exec", "-s", cid, "hostname") == socket.gethostname()
    state = json.loads(crictl(ctrs, "inspect", "-o", "json", cid))["status"]["state"]
    assert state == "CONTAINER_RUNNING"
    crictl(ctrs, "stopp", pod)
    crictl(ctrs, "rmp", pod)
    del ctrs.pods[pod]
