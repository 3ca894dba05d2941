# SPDX-License-Identifier: Apache-2.0
"""procMount as kubelet sends it, seen from inside real containers (runc, the `ctrs`
fixture of test_containers.py).

The CRI has no procMount field: kubelet sends the runtime's default masked_paths and
readonly_paths for procMount Default and empty lists for Unmasked. tinycri uses the lists
as sent, as containerd and CRI-O do (proto3 cannot tell an empty list from an absent one:
empty means none). A container without any security context (`linux: {}`), which kubelet
never sends, keeps the defaults. Needs root.
"""
import os

import grpc
import pytest

from test_containers import SLEEP, ctrs, pod_network  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

# k8s.io/kubernetes/pkg/securitycontext: what kubelet sends for procMount Default.
KUBELET_MASKED = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                  "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                  "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                  "/sys/devices/virtual/powercap"]
KUBELET_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

def mount_points(ctrs, cid):
    """{mount point: options} inside the container."""
    out = {}
    for line in ctrs.out(cid, "cat", "/proc/self/mountinfo").splitlines():
        f = line.split()
        out[f[4]] = f[5].split(",")
    return out


def check_masked(ctrs, cid, masked):
    """Masked: /dev/null or a read-only tmpfs over each default masked path this kernel has
    (each is a mount point), each default read-only path its own read-only mount; and what a
    user sees: /proc/timer_list reads empty. Unmasked: none of that."""
    mounts = mount_points(ctrs, cid)
    for p in KUBELET_MASKED:
        if os.path.exists(p):
            assert (p in mounts) == masked, (p, masked, sorted(mounts))
    for p in KUBELET_READONLY:
        if os.path.exists(p):
            assert (p in mounts) == masked, (p, masked, sorted(mounts))
            if masked:
                assert "ro" in mounts[p], (p, mounts[p])
    if os.path.exists("/proc/timer_list"):
        head = ctrs.out(cid, "head", "-c", "64", "/proc/timer_list")
        assert ("Timer List" in head) == (not masked), head


def test_default_procmount_masks_proc(ctrs):
    pod = ctrs.run_pod("procdefault")
    cid = ctrs.run(pod, "c", command=SLEEP, masked_paths=KUBELET_MASKED,
                   readonly_paths=KUBELET_READONLY)
    check_masked(ctrs, cid, True)
    r = ctrs.exec(cid, "sh", "-c", "echo x > /proc/sys/kernel/hostname")
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr


def test_unmasked_procmount_masks_nothing(ctrs):
    pod = ctrs.run_pod("procunmasked")
    cid = ctrs.run(pod, "c", command=SLEEP, masked_paths=[], readonly_paths=[])
    check_masked(ctrs, cid, False)


def test_no_security_context_keeps_the_defaults(ctrs):
    pod = ctrs.run_pod("procnone")
    cfg = ctrs.config("c", command=SLEEP)
    cfg.linux.ClearField("security_context")  # linux: {}
    cid = ctrs.rt.CreateContainer(ctrs.pb.CreateContainerRequest(
        pod_sandbox_id=pod, config=cfg, sandbox_config=ctrs.pods[pod]), timeout=60).container_id
    ctrs.start(cid)
    check_masked(ctrs, cid, True)


@pytest.mark.parametrize("field,paths", [("masked_paths", ["proc/kcore"]),
                                         ("readonly_paths", ["/proc/sys", "/proc/../etc"])])
def test_bad_path_lists_are_invalid(ctrs, field, paths):
    pod = ctrs.run_pod("procbad")
    e = ctrs.create_fails(pod, "x", command=SLEEP, **{field: paths})
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert "linux.security_context.%s[%d]" % (field, len(paths) - 1) in e.details()
