# SPDX-License-Identifier: Apache-2.0
"""tinycrid --check-config: each problem it names, triggered for real on this host, is
reported as its one line with exit status 1; a good configuration gets one "ok:" line and
status 0; nothing is created. Host changes (read-only mounts, no cgroup filesystem, no
overlay) are made inside a private mount namespace (unshare -m) that only the checked
process sees. Needs root."""
import os
import subprocess

import pytest

from conftest import daemon_env, sanitizer_report

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespaces)")

BIN_DIRS = "/usr/lib/cni:/opt/cni/bin"


class Checker:
    """A config that passes on this host (runc as the default handler, a CNI network of
    installed plugins, directories under a temporary dir), and ways to break it."""

    def __init__(self, d, binary):
        self.d = d
        self.binary = binary
        self.extra = {}
        d.write_cni("10-check.conflist", {
            "cniVersion": "1.0.0", "name": "checknet",
            "plugins": [{"type": "bridge", "bridge": "tc-check0",
                         "ipam": {"type": "host-local", "subnet": "10.91.0.0/24"}},
                        {"type": "portmap", "capabilities": {"portMappings": True}}]})

    def config(self, **sections):
        base = {"runtime": {"default_runtime": "runc"}, "cni": {"bin_dirs": BIN_DIRS}}
        for name, keys in sections.items():
            base.setdefault(name.replace("__", "."), {}).update(keys)
        self.d.write_config(base)

    def run(self, prefix=(), env=None):
        e = daemon_env()
        e.update(env or {})
        r = subprocess.run(list(prefix) + [self.binary, "--config", self.d.config_path,
                                           "--check-config"],
                           stdin=subprocess.DEVNULL, capture_output=True, env=e, timeout=60,
                           text=True, errors="replace")
        assert not sanitizer_report(r.stderr), r.stderr
        return r

    def in_mount_ns(self, script, env=None):
        """Run script (sh) in a private mount namespace, then the check there."""
        return self.run(prefix=["unshare", "--mount", "--propagation", "private", "sh", "-ec",
                                script + '\nexec "$@"', "sh"], env=env)

    def problems(self, r):
        return [l for l in r.stdout.splitlines() if not l.startswith(("ok:", "warning:"))]


@pytest.fixture
def chk(daemon, tinycrid):
    d = daemon(start=False)
    c = Checker(d, tinycrid)
    c.config()
    return c


def expect_one(chk, r, line_start, contains=None):
    """Exit 1 and exactly one problem line, which starts as given."""
    problems = chk.problems(r)
    assert r.returncode == 1, "status %d, stdout:\n%s\nstderr:\n%s" % (r.returncode, r.stdout,
                                                                     r.stderr)
    assert len(problems) == 1, r.stdout
    assert problems[0].startswith(line_start), r.stdout
    if contains:
        assert contains in problems[0], r.stdout
    return problems[0]


def test_good_config_is_ok_and_creates_nothing(chk):
    r = chk.run()
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [l for l in r.stdout.splitlines() if not l.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("ok: config %s; runtimes " % chk.d.config_path)
    assert "runc (runc version" in lines[0]
    assert "CNI network checknet" in lines[0]
    for path in (chk.d.root, chk.d.state, os.path.dirname(chk.d.socket)):
        assert not os.path.lexists(path), "%s was created" % path


def test_bad_config_file(chk):
    chk.d.write_config(text="[server]\nlog_level = loud\n")
    r = chk.run()
    expect_one(chk, r, "config: %s:2: log_level: " % chk.d.config_path)


def test_default_runtime_missing(chk):
    chk.config(runtime__runc={"path": "/nonexistent/runc"})
    r = chk.run()
    assert expect_one(chk, r, "runtime runc (default): ") == \
        "runtime runc (default): /nonexistent/runc: No such file or directory"


def test_other_runtime_missing_is_a_warning(chk):
    chk.config(runtime__extra={"path": "/nonexistent/extra-runtime"})
    r = chk.run()
    assert r.returncode == 0, r.stdout
    assert "warning: runtime extra: /nonexistent/extra-runtime: No such file or directory" \
        in r.stdout.splitlines()


def test_runtime_version_fails(chk):
    fake = os.path.join(chk.d.tmp, "broken-runtime")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\necho 'cannot start: missing libseccomp' >&2\nexit 3\n")
    os.chmod(fake, 0o755)
    chk.config(runtime__runc={"path": fake})
    r = chk.run()
    assert expect_one(chk, r, "runtime runc (default): ") == \
        "runtime runc (default): %s --version failed (status 3): " \
        "cannot start: missing libseccomp" % fake


@pytest.mark.skipif(not os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers"),
                    reason="needs a v1/v2 hybrid cgroup layout")
def test_crun_on_a_hybrid_layout_missing_a_v1_controller(chk):
    """crun 1.8 refuses a hybrid layout where a controller is only on cgroup2. Made here:
    the v1 hugetlb hierarchy unmounted and the unified one claiming hugetlb."""
    fake = os.path.join(chk.d.tmp, "controllers")
    with open(fake, "w") as f:
        f.write("hugetlb\n")
    chk.config(runtime={"default_runtime": "crun"})
    r = chk.in_mount_ns(
        "umount -l /sys/fs/cgroup/hugetlb 2>/dev/null || true\n"
        "mount --bind %s /sys/fs/cgroup/unified/cgroup.controllers" % fake)
    expect_one(chk, r, "runtime crun (default): crun",
               "cannot run with cgroups in hybrid mode: the hugetlb controller is only on "
               "cgroup2; mount it on v1 or use runc")


def test_keeper_missing(chk):
    r = chk.run(env={"TINYCRI_KEEPER": "/nonexistent/tinycri-keeper"})
    expect_one(chk, r, "keeper: /nonexistent/tinycri-keeper: No such file or directory")


def test_no_cni_config(chk):
    os.unlink(os.path.join(chk.d.cni_dir, "10-check.conflist"))
    r = chk.run()
    expect_one(chk, r, "cni: no CNI network config (.conflist, .conf or .json) in %s"
               % chk.d.cni_dir)


def test_invalid_cni_config(chk):
    chk.d.write_cni("10-check.conflist", "{\"cniVersion\": \"1.0.0\", \"plugins\": ")
    r = chk.run()
    expect_one(chk, r, "cni: no valid CNI network config in %s: " % chk.d.cni_dir)


def test_cni_plugin_not_installed(chk):
    chk.d.write_cni("10-check.conflist", {"cniVersion": "1.0.0", "name": "n",
                                           "plugins": [{"type": "no-such-plugin"}]})
    r = chk.run()
    expect_one(chk, r, "cni: CNI plugin no-such-plugin of network n ")


def test_no_cgroup_filesystem(chk):
    r = chk.in_mount_ns("umount -R -l /sys/fs/cgroup\nmount -t tmpfs none /sys/fs/cgroup")
    expect_one(chk, r, "cgroups: no cgroup filesystem is mounted at /sys/fs/cgroup")


def test_missing_cgroup_controller(chk):
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        # v2: the root's controller list, without pids
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            ctl = [c for c in f.read().split() if c != "pids"]
        fake = os.path.join(chk.d.tmp, "controllers")
        with open(fake, "w") as f:
            f.write(" ".join(ctl) + "\n")
        r = chk.in_mount_ns("mount --bind %s /sys/fs/cgroup/cgroup.controllers" % fake)
        expect_one(chk, r, "cgroups: the cgroup v2 controller pids is not enabled")
    else:
        mnt = [l.split()[4] for l in open("/proc/self/mountinfo")
               if " - cgroup " in l and ",pids" in l.split(" - ")[1]]
        assert mnt, "no v1 pids hierarchy on this host"
        r = chk.in_mount_ns("umount -l %s" % mnt[0])
        expect_one(chk, r, "cgroups: the cgroup v1 controller pids is not mounted under "
                           "/sys/fs/cgroup")


@pytest.mark.skipif(os.path.exists("/run/systemd/system"), reason="systemd is the init here")
def test_systemd_driver_without_systemd(chk):
    chk.config(runtime={"cgroup_driver": "systemd"})
    r = chk.run()
    expect_one(chk, r, "cgroups: cgroup_driver = systemd, but systemd is not the init system")


def test_no_overlay(chk):
    fake = os.path.join(chk.d.tmp, "filesystems")
    with open("/proc/filesystems") as f, open(fake, "w") as out:
        out.write("".join(l for l in f if l.split()[-1] != "overlay"))
    empty = os.path.join(chk.d.tmp, "nomodules")
    os.mkdir(empty)
    r = chk.in_mount_ns("mount --bind %s /proc/filesystems\n"
                        "if [ -d /lib/modules ]; then mount --bind %s /lib/modules; fi"
                        % (fake, empty))
    expect_one(chk, r, "kernel: no overlay filesystem")


def test_root_dir_is_a_file(chk):
    open(chk.d.root, "w").close()
    chk.config(server={"root_dir": chk.d.root})
    r = chk.run()
    assert expect_one(chk, r, "root_dir: ") == \
        "root_dir: %s exists and is not a directory" % chk.d.root


def test_state_dir_cannot_be_created_under_a_file(chk):
    blocker = os.path.join(chk.d.tmp, "file")
    open(blocker, "w").close()
    chk.config(server={"state_dir": blocker + "/state"})
    r = chk.run()
    assert expect_one(chk, r, "state_dir: ") == \
        "state_dir: %s/state cannot be created: %s is not a directory" % (blocker, blocker)


def test_state_dir_on_a_read_only_filesystem(chk):
    ro = os.path.join(chk.d.tmp, "ro")
    os.mkdir(ro)
    chk.config(server={"state_dir": ro + "/run/tinycri"})
    r = chk.in_mount_ns("mount -t tmpfs -o ro none %s" % ro)
    assert expect_one(chk, r, "state_dir: ") == \
        "state_dir: %s/run/tinycri cannot be created in %s: Read-only file system" % (ro, ro)


def test_root_dir_not_writable(chk):
    os.mkdir(chk.d.root, 0o700)
    r = chk.in_mount_ns("mount --bind %s %s\nmount -o remount,bind,ro %s"
                        % (chk.d.root, chk.d.root, chk.d.root))
    assert expect_one(chk, r, "root_dir: ") == \
        "root_dir: %s is not writable: Read-only file system" % chk.d.root


def test_root_dir_owned_by_another_user(chk):
    os.mkdir(chk.d.root, 0o700)
    os.chown(chk.d.root, 65534, 65534)
    r = chk.run()
    expect_one(chk, r, "root_dir: %s is owned by uid 65534, not by tinycrid's uid 0"
               % chk.d.root)


def test_socket_dir_writable_by_others_is_no_problem(chk):
    """tinycrid sets the socket's directory to 0700 at start-up (test_hostile.py)."""
    sock_dir = os.path.dirname(chk.d.socket)
    os.mkdir(sock_dir)
    os.chmod(sock_dir, 0o1777)
    r = chk.run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.stat(sock_dir).st_mode & 0o7777 == 0o1777, "the check changed the mode"


def test_socket_dir_is_a_symlink(chk):
    sock_dir = os.path.dirname(chk.d.socket)
    real = os.path.join(chk.d.tmp, "real-sock-dir")
    os.mkdir(real, 0o700)
    os.symlink(real, sock_dir)
    r = chk.run()
    expect_one(chk, r, "socket: %s is a symlink: tinycrid wants a directory of its own there"
               % sock_dir)


def test_socket_in_a_shared_directory(chk):
    chk.config(server={"socket": "/run/tinycri-check-%d.sock" % os.getpid()})
    r = chk.run()
    expect_one(chk, r, "socket: /run/tinycri-check-%d.sock: the socket needs a directory of its "
               "own" % os.getpid())


def test_socket_path_is_not_a_socket(chk):
    os.mkdir(os.path.dirname(chk.d.socket), 0o700)
    open(chk.d.socket, "w").close()
    r = chk.run()
    assert expect_one(chk, r, "socket: ") == \
        "socket: %s exists and is not a socket" % chk.d.socket


def test_several_problems_one_line_each(chk):
    chk.config(runtime__runc={"path": "/nonexistent/runc"})
    os.unlink(os.path.join(chk.d.cni_dir, "10-check.conflist"))
    r = chk.run(env={"TINYCRI_KEEPER": "/nonexistent/keeper"})
    assert r.returncode == 1
    areas = [l.split(":")[0] for l in chk.problems(r)]
    assert areas == ["runtime runc (default)", "keeper", "cni"], r.stdout
