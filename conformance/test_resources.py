# SPDX-License-Identifier: Apache-2.0
"""Live resource updates: UpdateContainerResources through the OCI runtime's `update`
(runc, and crun), seen in the container's cgroup, in ContainerStatus.resources and in
the bundle's config.json; UpdatePodSandboxResources written into the pod's cgroup
(its cgroup parent); validation errors. Real pods (the `ctrs` fixture of
test_containers.py). The cgroup files read here are cgroup v1's (this machine's
layout). Needs root."""
import os

import grpc
import pytest

from conftest import wait_until
from test_containers import SLEEP, ctrs, ensure_hugetlb_v1, pod_network  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

MiB = 1 << 20


def update(ctrs, cid, **res):
    ctrs.rt.UpdateContainerResources(
        ctrs.pb.UpdateContainerResourcesRequest(
            container_id=cid, linux=ctrs.pb.LinuxContainerResources(**res)), timeout=60)


def update_fails(ctrs, cid, **res):
    with pytest.raises(grpc.RpcError) as ei:
        update(ctrs, cid, **res)
    return ei.value


def cgroup_dir(ctrs, cid, controller):
    """The container's cgroup directory for a v1 controller, from its init's /proc entry."""
    pid = ctrs.info(cid)["pid"]
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            _, ctls, path = line.rstrip("\n").split(":", 2)
            if controller in ctls.split(","):
                return "/sys/fs/cgroup/%s%s" % (controller, path)
    raise AssertionError("no %s cgroup for %s" % (controller, cid))


def read_int(path):
    with open(path) as f:
        return int(f.read())


def check_update(ctrs, cid):
    pb = ctrs.pb
    mem = cgroup_dir(ctrs, cid, "memory")
    cpu = cgroup_dir(ctrs, cid, "cpu")
    assert read_int(mem + "/memory.limit_in_bytes") == 64 * MiB
    update(ctrs, cid, memory_limit_in_bytes=128 * MiB, cpu_quota=50000, cpu_period=100000)
    assert read_int(mem + "/memory.limit_in_bytes") == 128 * MiB
    assert read_int(cpu + "/cpu.cfs_quota_us") == 50000
    assert read_int(cpu + "/cpu.cfs_period_us") == 100000
    assert read_int(cpu + "/cpu.shares") == 512  # left as it was: the request did not set it
    res = ctrs.status(cid).status.resources.linux
    assert (res.memory_limit_in_bytes, res.cpu_quota, res.cpu_period, res.cpu_shares) == \
        (128 * MiB, 50000, 100000, 512)
    spec = ctrs.info(cid)["runtimeSpec"]["linux"]["resources"]
    assert spec["memory"]["limit"] == 128 * MiB and spec["cpu"]["quota"] == 50000
    assert "devices" in spec  # what the update does not touch stays
    # A second update merges into the first.
    update(ctrs, cid, cpu_shares=256)
    assert read_int(cpu + "/cpu.shares") == 256
    res = ctrs.status(cid).status.resources.linux
    assert (res.memory_limit_in_bytes, res.cpu_quota, res.cpu_shares) == (128 * MiB, 50000, 256)
    # The record keeps it across a restart of the daemon.
    ctrs.d.stop()
    ctrs.d.start()
    assert ctrs.status(cid).status.resources.linux.cpu_shares == 256
    assert ctrs.state(cid) == pb.CONTAINER_RUNNING


def test_update_container_resources_runc(ctrs):
    pod = ctrs.run_pod("upd")
    cid = ctrs.run(pod, "c", command=SLEEP, resources={"memory_limit_in_bytes": 64 * MiB,
                                                       "cpu_shares": 512})
    check_update(ctrs, cid)


def test_update_container_resources_crun(ctrs):
    why = ensure_hugetlb_v1()
    if why:
        pytest.skip("hugetlb cannot be mounted on cgroup v1 for crun: %s" % why)
    pod = ctrs.run_pod("updcrun", handler="crun")
    cid = ctrs.run(pod, "c", command=SLEEP, resources={"memory_limit_in_bytes": 64 * MiB,
                                                       "cpu_shares": 512})
    assert ctrs.info(cid)["runtime"] == "crun"
    check_update(ctrs, cid)


def test_update_errors(ctrs):
    pod = ctrs.run_pod("upderr")
    cid = ctrs.run(pod, "c", command=["sh", "-c", "(head -c 31457280 /dev/zero; sleep 3600) | tail"],
                   resources={"memory_limit_in_bytes": 64 * MiB})
    bad = [
        ({"cpu_shares": 1}, "cpu_shares"),
        ({"cpu_period": 500}, "cpu_period"),
        ({"cpu_quota": 10}, "cpu_quota"),
        ({"memory_limit_in_bytes": -5}, "memory_limit_in_bytes"),
        ({"memory_limit_in_bytes": 64 * MiB, "memory_swap_limit_in_bytes": 32 * MiB},
         "memory_swap_limit_in_bytes"),
        ({"cpuset_cpus": "0-x"}, "cpuset_cpus"),
        ({"cpuset_mems": "3-1"}, "cpuset_mems"),
        ({"hugepage_limits": [ctrs.pb.HugepageLimit(page_size="2QB", limit=1)]}, "page size"),
        ({"unified": {"../../etc": "1"}}, "unified"),
    ]
    for res, word in bad:
        e = update_fails(ctrs, cid, **res)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (res, e.details())
        assert word in e.details(), (res, e.details())
    e = update_fails(ctrs, "f" * 64, memory_limit_in_bytes=64 * MiB)
    assert e.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as ei:
        ctrs.rt.UpdateContainerResources(ctrs.pb.UpdateContainerResourcesRequest(), timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # Below what the container uses: the runtime (and the kernel) refuse, nothing changes.
    mem = cgroup_dir(ctrs, cid, "memory")
    wait_until(lambda: read_int(mem + "/memory.usage_in_bytes") > 30 * MiB, 30,
               what="the container to hold its 30 MiB")
    e = update_fails(ctrs, cid, memory_limit_in_bytes=8 * MiB)
    assert e.code() == grpc.StatusCode.INTERNAL, e.details()
    assert "runc update" in e.details()
    assert read_int(mem + "/memory.limit_in_bytes") == 64 * MiB
    assert ctrs.status(cid).status.resources.linux.memory_limit_in_bytes == 64 * MiB

    ctrs.stop(cid)
    e = update_fails(ctrs, cid, memory_limit_in_bytes=128 * MiB)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()


def test_update_pod_sandbox_resources(ctrs):
    pb = ctrs.pb
    parent = "/tinycri-test-upd-%d" % os.getpid()
    cfg = ctrs.pod_config("podupd")
    cfg.linux.cgroup_parent = parent
    pod = ctrs.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=60).pod_sandbox_id
    ctrs.pods = getattr(ctrs, "pods", {})
    ctrs.pods[pod] = cfg
    try:
        ctrs.run(pod, "c", command=SLEEP)  # the runtime makes the parent cgroup
        ctrs.rt.UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(
            pod_sandbox_id=pod,
            resources=pb.LinuxContainerResources(memory_limit_in_bytes=256 * MiB, cpu_shares=1024,
                                                 cpu_quota=100000, cpu_period=100000),
            overhead=pb.LinuxContainerResources(memory_limit_in_bytes=16 * MiB, cpu_shares=10,
                                                cpu_quota=10000, cpu_period=100000)),
            timeout=30)
        # resources + overhead, in the pod's own cgroup
        assert read_int("/sys/fs/cgroup/memory%s/memory.limit_in_bytes" % parent) == 272 * MiB
        assert read_int("/sys/fs/cgroup/cpu%s/cpu.shares" % parent) == 1034
        assert read_int("/sys/fs/cgroup/cpu%s/cpu.cfs_quota_us" % parent) == 110000
        assert read_int("/sys/fs/cgroup/cpu%s/cpu.cfs_period_us" % parent) == 100000

        with pytest.raises(grpc.RpcError) as ei:
            ctrs.rt.UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(
                pod_sandbox_id=pod, resources=pb.LinuxContainerResources(cpu_shares=1)),
                timeout=30)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "cpu_shares" in ei.value.details()
    finally:
        ctrs.cleanup()
        ctrs.pods = {}
        for ctl in ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
                    "hugetlb", "systemd", "unified"):
            d = "/sys/fs/cgroup/%s%s" % (ctl, parent)
            if os.path.isdir(d):
                os.rmdir(d)

    plain = ctrs.run_pod("nocg")
    with pytest.raises(grpc.RpcError) as ei:
        ctrs.rt.UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(
            pod_sandbox_id=plain, resources=pb.LinuxContainerResources(cpu_shares=512)),
            timeout=30)
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cgroup_parent" in ei.value.details()
    with pytest.raises(grpc.RpcError) as ei:
        ctrs.rt.UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(
            pod_sandbox_id="f" * 64, resources=pb.LinuxContainerResources(cpu_shares=512)),
            timeout=30)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
