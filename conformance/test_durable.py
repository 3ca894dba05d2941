# SPDX-License-Identifier: Apache-2.0
"""Never losing track (issue 11): a full disk during a pull and during record
writes, a host restart, records that cannot be read.

For the full disk the daemon's root dir is a small tmpfs of its own (mounted by
the `small` fixture under the daemon's temp dir, unmounted at the end), filled
by a file the test writes and removes, so "the disk is full" is exact and
touches nothing else. The state dir stays on /tmp. A host restart is what it
leaves behind: no keeper, no container process, no mount, an empty state dir,
and the records in the root dir. Pods use the container tests' bridge and the
`ctrs` fixture (test_containers.py). Needs root.
"""
import errno
import hashlib
import os
import shutil
import signal

import grpc
import pytest

import imagebuild as ib
from conftest import wait_until
from test_containers import (Ctrs, conflist, ctrs, daemon_config, keeper_pids, mounts_under,
                             pod_network, sh)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tmpfs mounts and containers need root")

assert pod_network and ctrs  # fixtures, used by name below

KiB = 1024
MiB = 1024 * KiB
ROOT_SIZE = 32 * MiB
CALL_TIMEOUT = 60.0
PULL_TIMEOUT = 90.0


@pytest.fixture
def small(daemon, api, pod_network, pushed_images):
    """Ctrs on a daemon whose root dir is a ROOT_SIZE tmpfs; nothing pulled yet."""
    d = daemon(start=False)
    os.makedirs(d.root, mode=0o700)
    sh("mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % ROOT_SIZE, "tc-durable", d.root)
    c = Ctrs(d, api, pushed_images)
    d.write_cni("10-test.conflist", conflist(c.ipam_dir))
    d.write_config(daemon_config(pushed_images))
    problems = []
    try:
        d.start()
        yield c
        free_disk(d)
        if d.alive():
            try:
                c.cleanup()
                wait_until(lambda: c.container_dirs() == [], 10,
                           what="container directories to go")
            except grpc.RpcError as e:
                problems.append("cleanup: %s %s" % (e.code(), e.details()))
            rc = d.stop()
            if rc != 0:
                problems.append("tinycrid exited with status %d" % rc)
    finally:
        keepers = keeper_pids(d.state)
        for pid in keepers:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        rdir = os.path.join(d.state, "runtime", "runc")
        if os.path.isdir(rdir):
            for cid in os.listdir(rdir):
                sh("/usr/bin/runc", "--root", rdir, "delete", "--force", cid, check=False)
        left = mounts_under(d.tmp)
        for m in sorted(left, key=len, reverse=True):
            sh("umount", "-l", m, check=False)
        if keepers:
            problems.append("keepers left running: %s" % keepers)
        if [m for m in left if "/containers/" in m]:
            problems.append("mounts left under %s: %s" % (d.tmp, left))
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def filler_path(d):
    return os.path.join(d.root, "filler")


def fill_disk(d, leave=0):
    """Fill the root tmpfs until only about leave bytes are free (0: until ENOSPC)."""
    st = os.statvfs(d.root)
    want = st.f_bavail * st.f_frsize - leave
    block = b"\0" * (256 * KiB)
    with open(filler_path(d), "ab") as f:
        written = 0
        try:
            while leave == 0 or written < want:
                n = len(block) if leave == 0 else min(len(block), want - written)
                if n <= 0:
                    break
                f.write(block[:n])
                f.flush()
                written += n
        except OSError as e:
            assert e.errno == errno.ENOSPC
    if leave == 0:
        # Small writes too: fill the last partial pages.
        try:
            with open(filler_path(d) + "2", "ab", buffering=0) as f:
                while True:
                    f.write(b"\0" * 512)
        except OSError as e:
            assert e.errno == errno.ENOSPC


def free_disk(d):
    for p in (filler_path(d), filler_path(d) + "2"):
        if os.path.exists(p):
            os.unlink(p)


def expect_exhausted(fn):
    with pytest.raises(grpc.RpcError) as ei:
        fn()
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value.details()
    return ei.value


def layer_entries(d):
    path = os.path.join(d.root, "layers")
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def image_listed(c, ref):
    resp = c.d.image.ImageStatus(c.pb.ImageStatusRequest(image=c.pb.ImageSpec(image=ref)),
                                 timeout=CALL_TIMEOUT)
    return resp.HasField("image")


def test_pull_on_a_full_disk_commits_no_layer(small, pushed_images):
    """ENOSPC while a layer is unpacked fails the pull with RESOURCE_EXHAUSTED and leaves
    no layer; once there is room the next pull unpacks it whole and containers run."""
    c, d = small, small.d
    layer = pushed_images["busybox"].layers[0]
    # Room for the blob, the manifest and the config, and half the unpacked layer.
    fill_disk(d, leave=layer.blob.size + 128 * KiB + len(layer.tar) // 2)
    err = expect_exhausted(c.pull)
    assert "No space left on device" in err.details()
    assert not image_listed(c, c.image_ref)
    assert layer_entries(d) == []

    free_disk(d)
    c.image_id = c.pull()
    assert image_listed(c, c.image_ref)
    pod = c.run_pod("full")
    cid = c.run(pod, command=["sleep", "3600"])
    out = c.out(cid, "/bin/busybox", "sha256sum", "/bin/busybox")
    with open(ib.BUSYBOX, "rb") as f:
        assert out.split()[0] == hashlib.sha256(f.read()).hexdigest()


def test_record_writes_on_a_full_disk(small):
    """RunPodSandbox, CreateContainer and StopPodSandbox on a full disk answer
    RESOURCE_EXHAUSTED, list nothing half-made, and work once there is room."""
    c, d = small, small.d
    c.image_id = c.pull()
    pod = c.run_pod("p1")
    fill_disk(d)

    expect_exhausted(lambda: c.run_pod("p2"))
    pods = c.rt.ListPodSandbox(c.pb.ListPodSandboxRequest(), timeout=CALL_TIMEOUT).items
    assert [p.id for p in pods] == [pod]

    expect_exhausted(lambda: c.create(pod, "c1", command=["sleep", "3600"]))
    assert list(c.list()) == []
    assert c.container_dirs() == []

    free_disk(d)
    pod2 = c.run_pod("p2")
    cid = c.run(pod2, "c1", command=["sleep", "3600"])
    assert c.state(cid) == c.pb.CONTAINER_RUNNING

    # A Stop that cannot save the pod's state fails; kubelet's retry with room works.
    fill_disk(d)
    expect_exhausted(lambda: c.rt.StopPodSandbox(
        c.pb.StopPodSandboxRequest(pod_sandbox_id=pod2), timeout=CALL_TIMEOUT))
    free_disk(d)
    c.rt.StopPodSandbox(c.pb.StopPodSandboxRequest(pod_sandbox_id=pod2), timeout=CALL_TIMEOUT)
    st = c.rt.PodSandboxStatus(c.pb.PodSandboxStatusRequest(pod_sandbox_id=pod2),
                               timeout=CALL_TIMEOUT).status
    assert st.state == c.pb.SANDBOX_NOTREADY
    assert c.state(cid) == c.pb.CONTAINER_EXITED


def simulate_host_restart(d):
    """Stop tinycrid, then take away what a reboot takes: keepers, container processes
    (runc delete --force), every mount under the daemon's dirs, and the state dir."""
    assert d.stop() == 0
    for pid in keeper_pids(d.state):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: keeper_pids(d.state) == [], 10, what="keepers to die")
    rdir = os.path.join(d.state, "runtime", "runc")
    for cid in os.listdir(rdir) if os.path.isdir(rdir) else []:
        sh("/usr/bin/runc", "--root", rdir, "delete", "--force", cid)
    for m in sorted(mounts_under(d.tmp), key=len, reverse=True):
        sh("umount", "-l", m)
    shutil.rmtree(d.state)


def test_host_restart(ctrs):
    """After a reboot (empty state dir, records kept) pods are NOTREADY and containers
    EXITED with exit code 255 and a message saying why, at once; all stop and go cleanly."""
    c, d = ctrs, ctrs.d
    pod = c.run_pod("rb")
    running = c.run(pod, "running", command=["sleep", "3600"])
    created = c.create(pod, "created", command=["sleep", "3600"])
    exited = c.run(pod, "exited", command=["sh", "-c", "exit 7"])
    c.wait_exited(exited)
    simulate_host_restart(d)
    d.start()

    st = c.rt.PodSandboxStatus(c.pb.PodSandboxStatusRequest(pod_sandbox_id=pod),
                               timeout=CALL_TIMEOUT).status
    assert st.state == c.pb.SANDBOX_NOTREADY
    for cid in (running, created):
        s = c.status(cid).status
        assert s.state == c.pb.CONTAINER_EXITED, (cid, s.state)
        assert s.exit_code == 255
        assert s.reason == "Unknown"
        assert "host restarted" in s.message
        assert s.finished_at > 0
    s = c.status(exited).status
    assert (s.state, s.exit_code) == (c.pb.CONTAINER_EXITED, 7)

    c.rt.StopPodSandbox(c.pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=CALL_TIMEOUT)
    for cid in (running, created, exited):
        c.remove(cid)
    c.rt.RemovePodSandbox(c.pb.RemovePodSandboxRequest(pod_sandbox_id=pod),
                          timeout=CALL_TIMEOUT)
    c.pods = {}
    assert list(c.rt.ListPodSandbox(c.pb.ListPodSandboxRequest(), timeout=CALL_TIMEOUT).items) == []
    c.nothing_left()
    assert mounts_under(d.tmp) == []


def test_unreadable_records_are_moved_aside(ctrs):
    """A record cut short (a power cut) is moved into corrupt/ with a log line; the rest loads."""
    c, d = ctrs, ctrs.d
    pod = c.run_pod("ok")
    cid = c.run(pod, "c", command=["sleep", "3600"])
    assert d.stop() == 0
    bad = {}
    for sub, real in (("sandboxes", pod), ("containers", cid),
                      ("images", c.image_id.split(":")[-1])):
        with open(os.path.join(d.root, sub, real + ".json"), "rb") as f:
            text = f.read()
        name = "%s.json" % ("e" * 64)
        with open(os.path.join(d.root, sub, name), "wb") as f:
            f.write(text[:len(text) // 2])
        bad[sub] = (name, text[:len(text) // 2])
    d.start()

    pods = c.rt.ListPodSandbox(c.pb.ListPodSandboxRequest(), timeout=CALL_TIMEOUT).items
    assert [(p.id, p.state) for p in pods] == [(pod, c.pb.SANDBOX_READY)]
    assert [x.id for x in c.list()] == [cid]
    assert c.state(cid) == c.pb.CONTAINER_RUNNING
    assert image_listed(c, c.image_ref)
    for sub, (name, text) in bad.items():
        assert not os.path.exists(os.path.join(d.root, sub, name))
        with open(os.path.join(d.root, sub, "corrupt", name), "rb") as f:
            assert f.read() == text
    log = d.stderr_text()
    for kind in ("sandbox", "container", "image"):
        assert "unreadable %s record moved aside" % kind in log
    for sub in bad:
        shutil.rmtree(os.path.join(d.root, sub, "corrupt"))  # the fixture counts what is left


def test_remove_pod_returns_once_mounts_are_gone(ctrs):
    """RemovePodSandbox (without a Stop first, as `crictl rmp -f` does) answers only
    once its containers' overlay rootfs is unmounted and their directories are gone."""
    c, d = ctrs, ctrs.d
    for i in range(3):
        pod = c.run_pod("rm%d" % i)
        c.run(pod, "a", command=["sleep", "3600"])
        c.run(pod, "b", command=["sleep", "3600"])
        c.rt.RemovePodSandbox(c.pb.RemovePodSandboxRequest(pod_sandbox_id=pod),
                              timeout=CALL_TIMEOUT)
        del c.pods[pod]
        assert mounts_under(os.path.join(d.root, "containers")) == []
        assert c.container_dirs() == []


def tinycri_cgroups():
    """Every /sys/fs/cgroup/<hierarchy>/tinycri/<id> directory (pods without a cgroup parent)."""
    out = set()
    base = "/sys/fs/cgroup"
    for h in os.listdir(base):
        d = os.path.join(base, h, "tinycri")
        if os.path.isdir(d):
            out |= {os.path.join(d, n) for n in os.listdir(d)
                    if os.path.isdir(os.path.join(d, n))}
    return out


@pytest.mark.parametrize("resources,field", [
    ({"cpuset_cpus": "999"}, "cpuset_cpus"),
    ({"cpu_quota": -5}, "cpu_quota"),
    ({"cpu_period": 1}, "cpu_period"),
    ({"memory_limit_in_bytes": 1}, "memory_limit_in_bytes"),
])
def test_resources_the_kernel_refuses_are_invalid_up_front(ctrs, resources, field):
    """Values the kernel or runtime would refuse once the cgroups exist: INVALID_ARGUMENT
    naming the field, and no cgroup directory left behind."""
    c = ctrs
    pod = c.run_pod("res")
    before = tinycri_cgroups()
    e = c.create_fails(pod, "c", command=["sleep", "3600"], resources=resources)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert field in e.details()
    assert list(c.list()) == []
    assert tinycri_cgroups() == before


def test_unified_on_cgroup_v1_is_invalid(ctrs):
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        pytest.skip("the host has cgroup v2")
    c = ctrs
    pod = c.run_pod("uni")
    e = c.create_fails(pod, "c", command=["sleep", "3600"],
                       resources={"unified": {"memory.high": "100000000"}})
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert "unified" in e.details()

