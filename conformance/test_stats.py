# SPDX-License-Identifier: Apache-2.0
"""What kubelet polls: ContainerStats, ListContainerStats, PodSandboxStats,
ListPodSandboxStats, the metrics RPCs and ImageFsInfo's container file systems,
checked against what the containers really did (memory they hold, CPU they burnt
for a measured time, bytes written into their writable layer, bytes sent between
two pods), with real pods and runc (the `ctrs` fixture of test_containers.py).

Tolerances: memory within a few MiB of what a container allocated (the shell and
the page tables come on top); CPU within a quarter of the wall time it burnt (the
machine is shared with other work); network counters at least the bytes sent and
at most the bytes plus protocol overhead.

The cgroup layout here is v1 with a cgroup2 mount at /sys/fs/cgroup/unified; the
cgroup parsers' v1, v2 and hybrid cases are also covered by tests/unit/test_cgroup.c
with fixtures, and so is the systemd driver's path mapping (slices and scopes):
a daemon with cgroup_driver = systemd needs systemd as init, which this machine
does not run. Needs root.
"""
import os
import time

import grpc
import pytest

from conftest import wait_until
from test_containers import SLEEP, ctrs, pod_network  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

MiB = 1 << 20


def hog_command(size):
    """Hold size bytes of anonymous memory: tail keeps the last "line" of its input (here all
    of it, /dev/zero has no newline) and, its input never ending, never lets go of it."""
    return ["sh", "-c", "(head -c %d /dev/zero; sleep 3600) | tail" % size]


def container_stats(ctrs, cid):
    return ctrs.rt.ContainerStats(ctrs.pb.ContainerStatsRequest(container_id=cid),
                                  timeout=10).stats


def list_container_stats(ctrs, **filt):
    f = ctrs.pb.ContainerStatsFilter(**filt) if filt else None
    return ctrs.rt.ListContainerStats(ctrs.pb.ListContainerStatsRequest(filter=f),
                                      timeout=10).stats


def pod_stats(ctrs, pod):
    return ctrs.rt.PodSandboxStats(ctrs.pb.PodSandboxStatsRequest(pod_sandbox_id=pod),
                                   timeout=10).stats


def list_pod_stats(ctrs, **filt):
    f = ctrs.pb.PodSandboxStatsFilter(**filt) if filt else None
    return ctrs.rt.ListPodSandboxStats(ctrs.pb.ListPodSandboxStatsRequest(filter=f),
                                       timeout=10).stats


def test_memory_of_a_container_holding_50_mib(ctrs):
    pod = ctrs.run_pod("mem")
    idle = ctrs.run(pod, "idle", command=SLEEP)
    hog = ctrs.run(pod, "hog", command=hog_command(50 * MiB))
    wait_until(lambda: container_stats(ctrs, hog).memory.working_set_bytes.value > 50 * MiB, 30,
               what="the hog's working set to pass 50 MiB")
    st = container_stats(ctrs, hog)
    ws = st.memory.working_set_bytes.value
    assert 50 * MiB <= ws <= 70 * MiB, ws
    assert st.memory.usage_bytes.value >= ws
    assert 50 * MiB <= st.memory.rss_bytes.value <= 70 * MiB
    assert st.memory.page_faults.value > 50 * MiB // 4096 // 2
    assert st.memory.timestamp > 0
    # No limit: nothing is "available" to report.
    assert not st.memory.HasField("available_bytes")
    assert st.attributes.id == hog and st.attributes.metadata.name == "hog"

    small = container_stats(ctrs, idle)
    assert small.memory.working_set_bytes.value < 10 * MiB

    # The pod without a cgroup of its own: its containers added up.
    ps = pod_stats(ctrs, pod)
    assert ps.attributes.id == pod
    assert {c.attributes.id for c in ps.linux.containers} == {idle, hog}
    assert ps.linux.memory.working_set_bytes.value >= ws
    assert ps.linux.process.process_count.value >= 3  # sleep, sh, tail/sleep


def test_memory_limit_gives_available_bytes(ctrs):
    pod = ctrs.run_pod("memlim")
    cid = ctrs.run(pod, "lim", command=SLEEP, resources={"memory_limit_in_bytes": 64 * MiB})
    st = container_stats(ctrs, cid)
    ws = st.memory.working_set_bytes.value
    assert st.memory.available_bytes.value == 64 * MiB - ws


def test_cpu_of_a_container_burning_for_a_measured_time(ctrs):
    pod = ctrs.run_pod("cpu")
    cid = ctrs.run(pod, "burn", command=["sh", "-c", "while :; do :; done"])
    st0 = container_stats(ctrs, cid)
    t0 = time.monotonic()
    time.sleep(3)
    st1 = container_stats(ctrs, cid)
    t1 = time.monotonic()
    used = st1.cpu.usage_core_nano_seconds.value - st0.cpu.usage_core_nano_seconds.value
    wall = (t1 - t0) * 1e9
    # One core busy (the machine is shared: allow a quarter off).
    assert 0.75 * wall <= used <= 1.1 * wall, (used, wall)
    # nano-cores: the rate between the two samples, about one core.
    assert 0.75e9 <= st1.cpu.usage_nano_cores.value <= 1.1e9, st1.cpu.usage_nano_cores.value
    assert st1.cpu.timestamp > st0.cpu.timestamp
    ctrs.stop(cid)
    # Exited: no cgroup to read, but the record and its writable layer are still listed.
    st = container_stats(ctrs, cid)
    assert not st.HasField("cpu") and not st.HasField("memory")
    assert st.HasField("writable_layer")


def test_writable_layer_counts_what_the_container_wrote(ctrs):
    pod = ctrs.run_pod("disk")
    cid = ctrs.run(pod, "writer", command=SLEEP)
    # The first figure comes from the walk made when the container was created.
    st = container_stats(ctrs, cid)
    assert st.writable_layer.used_bytes.value < MiB
    before = st.writable_layer.inodes_used.value
    assert before >= 1
    assert st.writable_layer.fs_id.mountpoint == os.path.join(ctrs.d.root, "containers")
    assert st.writable_layer.timestamp > 0
    ctrs.out(cid, "sh", "-c", "mkdir /data && dd if=/dev/urandom of=/data/blob bs=1048576 count=10 "
                              "2>/dev/null && for i in 1 2 3 4 5; do touch /data/f$i; done")
    # A figure older than 10 s is refreshed (in a child) while the old one is served.
    wait_until(lambda: container_stats(ctrs, cid).writable_layer.used_bytes.value >= 10 * MiB, 40,
               interval=1, what="the writable layer to count the 10 MiB written")
    st = container_stats(ctrs, cid)
    assert st.writable_layer.used_bytes.value <= 11 * MiB
    assert st.writable_layer.inodes_used.value >= before + 7  # /data, blob, f1..f5

    # ImageFsInfo adds the writable layers up under container_filesystems.
    info = ctrs.d.image.ImageFsInfo(ctrs.pb.ImageFsInfoRequest(), timeout=30)
    assert len(info.container_filesystems) == 1
    cfs = info.container_filesystems[0]
    assert cfs.fs_id.mountpoint == os.path.join(ctrs.d.root, "containers")
    assert cfs.used_bytes.value >= 10 * MiB
    assert cfs.inodes_used.value >= before + 7
    assert len(info.image_filesystems) == 1


def iface(stats, name="eth0"):
    for i in stats.linux.network.interfaces:
        if i.name == name:
            return i
    raise AssertionError("no %s in %s" % (name, [i.name for i in stats.linux.network.interfaces]))


def test_network_counters_match_a_transfer_between_two_pods(ctrs):
    size = 10 * MiB
    server_pod = ctrs.run_pod("netsrv")
    client_pod = ctrs.run_pod("netcli")
    # busybox nc -l closes at once when its stdin ends: give it one that does not.
    ctrs.run(server_pod, "srv", command=["sh", "-c", "sleep 3600 | nc -l -p 5000 >/dev/null"])
    cli = ctrs.run(client_pod, "cli", command=SLEEP)
    ip = ctrs.rt.PodSandboxStatus(ctrs.pb.PodSandboxStatusRequest(pod_sandbox_id=server_pod),
                                  timeout=10).status.network.ip
    # The first call opens each pod's counters inside its namespace (a child, once).
    srv0, cli0 = pod_stats(ctrs, server_pod), pod_stats(ctrs, client_pod)
    assert srv0.linux.network.default_interface.name == "eth0"
    assert "lo" not in [i.name for i in srv0.linux.network.interfaces]
    # The server may not listen yet: retry the connection (a refused one sends nothing).
    out = ctrs.out(cli, "sh", "-c", "for i in $(seq 100); do head -c %d /dev/zero | nc -w 3 %s 5000 "
                                    "&& echo sent && break; sleep 0.1; done" % (size, ip))
    assert "sent" in out
    srv1, cli1 = pod_stats(ctrs, server_pod), pod_stats(ctrs, client_pod)
    rx = iface(srv1).rx_bytes.value - iface(srv0).rx_bytes.value
    tx = iface(cli1).tx_bytes.value - iface(cli0).tx_bytes.value
    # The payload plus TCP/IP headers and ACKs (a few percent).
    assert size <= rx <= size * 1.1, rx
    assert size <= tx <= size * 1.1, tx
    assert iface(srv1).rx_errors.value == 0 and iface(cli1).tx_errors.value == 0
    assert srv1.linux.network.timestamp > srv0.linux.network.timestamp
    # The same counters come through ListPodSandboxStats.
    listed = {s.attributes.id: s for s in list_pod_stats(ctrs)}
    assert set(listed) == {server_pod, client_pod}
    assert iface(listed[server_pod]).rx_bytes.value >= iface(srv1).rx_bytes.value


def test_filters_and_errors(ctrs):
    pb = ctrs.pb
    pod_a = ctrs.run_pod("filta")
    pod_b = ctrs.run_pod("filtb")
    a1 = ctrs.run(pod_a, "a1", command=SLEEP, labels={"app": "x"})
    a2 = ctrs.run(pod_a, "a2", command=SLEEP, labels={"app": "y"})
    b1 = ctrs.run(pod_b, "b1", command=SLEEP, labels={"app": "x"})
    ids = lambda stats: sorted(s.attributes.id for s in stats)  # noqa: E731
    assert ids(list_container_stats(ctrs)) == sorted([a1, a2, b1])
    assert ids(list_container_stats(ctrs, pod_sandbox_id=pod_a)) == sorted([a1, a2])
    assert ids(list_container_stats(ctrs, id=b1[:12])) == [b1]
    assert ids(list_container_stats(ctrs, label_selector={"app": "x"})) == sorted([a1, b1])
    assert ids(list_container_stats(ctrs, pod_sandbox_id=pod_b, label_selector={"app": "y"})) == []
    listed = list_container_stats(ctrs, id=a1)[0]
    assert dict(listed.attributes.labels) == {"app": "x"}
    assert listed.cpu.usage_core_nano_seconds.value > 0

    assert ids(list_pod_stats(ctrs, id=pod_b)) == [pod_b]
    assert [c.attributes.id for c in list_pod_stats(ctrs, id=pod_b)[0].linux.containers] == [b1]

    for call, req in ((ctrs.rt.ContainerStats, pb.ContainerStatsRequest(container_id="f" * 64)),
                      (ctrs.rt.PodSandboxStats, pb.PodSandboxStatsRequest(pod_sandbox_id="f" * 64))):
        with pytest.raises(grpc.RpcError) as ei:
            call(req, timeout=10)
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND, ei.value.details()
    for call, req in ((ctrs.rt.ContainerStats, pb.ContainerStatsRequest()),
                      (ctrs.rt.PodSandboxStats, pb.PodSandboxStatsRequest())):
        with pytest.raises(grpc.RpcError) as ei:
            call(req, timeout=10)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value.details()

    # A stopped pod is not listed (it has no network or running containers left).
    ctrs.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_b), timeout=60)
    assert ids(list_pod_stats(ctrs)) == [pod_a]


def test_pod_with_a_cgroup_parent_reports_its_own_cgroup(ctrs):
    parent = "/tinycri-test-%d" % os.getpid()
    pb = ctrs.pb
    cfg = ctrs.pod_config("cgparent")
    cfg.linux.cgroup_parent = parent
    pod = ctrs.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=60).pod_sandbox_id
    ctrs.pods = getattr(ctrs, "pods", {})
    ctrs.pods[pod] = cfg
    try:
        cid = ctrs.run(pod, "hog", command=hog_command(30 * MiB))
        wait_until(lambda: pod_stats(ctrs, pod).linux.memory.working_set_bytes.value > 30 * MiB,
                   30, what="the pod cgroup's working set to pass 30 MiB")
        # The figures are the parent cgroup's: what the kernel shows there.
        with open("/sys/fs/cgroup/memory%s/memory.usage_in_bytes" % parent) as f:
            kernel_usage = int(f.read())
        ps = pod_stats(ctrs, pod)
        assert abs(ps.linux.memory.usage_bytes.value - kernel_usage) < 4 * MiB
        assert ps.linux.cpu.usage_core_nano_seconds.value > 0
        assert [c.attributes.id for c in ps.linux.containers] == [cid]
    finally:
        ctrs.cleanup()
        ctrs.pods = {}
        for ctl in ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
                    "hugetlb", "systemd", "unified"):
            d = "/sys/fs/cgroup/%s%s" % (ctl, parent)
            if os.path.isdir(d):
                os.rmdir(d)


def test_metrics(ctrs):
    pb = ctrs.pb
    descs = ctrs.rt.ListMetricDescriptors(pb.ListMetricDescriptorsRequest(), timeout=10).descriptors
    by_name = {d.name: d for d in descs}
    base = ["container", "id", "image", "name", "namespace", "pod"]
    assert list(by_name["container_cpu_usage_seconds_total"].label_keys) == base + ["cpu"]
    assert by_name["container_memory_working_set_bytes"].help == "Current working set in bytes."
    assert list(by_name["container_network_receive_bytes_total"].label_keys) == base + ["interface"]
    assert list(by_name["container_fs_usage_bytes"].label_keys) == base + ["device"]

    pod = ctrs.run_pod("metrics")
    cid = ctrs.run(pod, "hog", command=hog_command(20 * MiB))
    wait_until(lambda: container_stats(ctrs, cid).memory.working_set_bytes.value > 20 * MiB, 30,
               what="the hog's working set to pass 20 MiB")
    pms = ctrs.rt.ListPodSandboxMetrics(pb.ListPodSandboxMetricsRequest(), timeout=10).pod_metrics
    assert [p.pod_sandbox_id for p in pms] == [pod]
    pm = pms[0]
    for m in list(pm.metrics) + [m for c in pm.container_metrics for m in c.metrics]:
        assert m.name in by_name, m.name
        assert len(m.label_values) == len(by_name[m.name].label_keys), m
    net = {(m.name, m.label_values[-1]) for m in pm.metrics}
    assert ("container_network_receive_bytes_total", "eth0") in net
    [cm] = pm.container_metrics
    assert cm.container_id == cid
    got = {m.name: m for m in cm.metrics if m.name != "container_memory_failures_total"}
    ws = got["container_memory_working_set_bytes"]
    assert 20 * MiB <= ws.value.value <= 30 * MiB
    assert ws.metric_type == pb.GAUGE and ws.timestamp == 0
    labels = dict(zip(by_name[ws.name].label_keys, ws.label_values))
    assert labels == {"container": "hog", "id": cid, "image": ctrs.image_ref, "name": cid,
                      "namespace": "default", "pod": "metrics"}
    assert got["container_cpu_usage_seconds_total"].metric_type == pb.COUNTER
    assert got["container_processes"].value.value >= 2
    assert got["container_start_time_seconds"].value.value > 1700000000
    assert got["container_fs_usage_bytes"].timestamp > 0  # measured earlier, by a walk
