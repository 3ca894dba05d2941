# SPDX-License-Identifier: Apache-2.0
"""tinycri-keeper driving a real OCI runtime, without a daemon: the test plays
tinycrid's part (reads the status pipe on fd 3, runs `<runtime> start`, kills
containers through the runtime) and checks what the kubelet and the daemon
would see: the CRI log file, exit.json, keeper.json, the control socket, and
the keeper's memory while a container runs.

The keeper is $TINYCRI_KEEPER (an absolute path), else the tinycri-keeper beside
$TINYCRID, else <repo>/build/tinycri-keeper.
Every test runs with runc, and with crun when crun can run containers here
(Debian's crun 1.8.1 refuses a v1/v2 hybrid cgroup layout unless hugetlb is
also mounted on v1, which the crun fixture does when it is missing). Needs root.
"""
import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import REPO, sanitizer_report, wait_until

KiB = 1024
MiB = 1024 * KiB
RSS_BUDGET_KIB = 128
STATUS_TIMEOUT = 20.0  # seconds until the keeper reports on fd 3
EXIT_TIMEOUT = 20.0    # seconds until a finished container's keeper has exited
CGROUP_PARENT = "tinycri-keeper-test"
BUSYBOX_APPLETS = ("sh", "echo", "sleep", "cat", "dd", "tr", "stty", "head", "true")
RECORD = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([PF]) (.*)$")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the keeper runs containers: needs root")


def keeper_path():
    """$TINYCRI_KEEPER, else the keeper built beside $TINYCRID (so scripts/test's
    sanitizer stage runs the sanitizer keeper), else <repo>/build/tinycri-keeper."""
    path = os.environ.get("TINYCRI_KEEPER")
    if not path and os.environ.get("TINYCRID"):
        path = os.path.join(os.path.dirname(os.environ["TINYCRID"]), "tinycri-keeper")
    if not path:
        path = os.path.join(REPO, "build", "tinycri-keeper")
    if not os.path.isabs(path):
        raise pytest.UsageError("TINYCRI_KEEPER must be an absolute path, got %r" % path)
    return path


@pytest.fixture(scope="session")
def keeper_bin():
    path = keeper_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("tinycri-keeper not found at %s: build it first, or point TINYCRI_KEEPER "
                    "at it" % path, pytrace=False)
    return path


def is_sanitized(path):
    with open(path, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__ubsan_handle" in data


# --------------------------------------------------------------------------
# Runtimes and bundles
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def rootfs():
    """A read-only busybox root shared by every bundle."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    out = subprocess.run(["file", "-L", busybox], capture_output=True, text=True).stdout \
        if shutil.which("file") else "statically linked"
    if "statically linked" not in out:
        pytest.skip("a static busybox is needed (Debian package busybox-static)")
    top = tempfile.mkdtemp(prefix="tc-keeper-rootfs-")
    root = os.path.join(top, "rootfs")
    os.makedirs(os.path.join(root, "bin"))
    for d in ("proc", "dev", "sys", "tmp"):
        os.makedirs(os.path.join(root, d))
    shutil.copy(busybox, os.path.join(root, "bin", "busybox"))
    for applet in BUSYBOX_APPLETS:
        os.symlink("busybox", os.path.join(root, "bin", applet))
    yield root
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="session")
def base_spec(rootfs):
    """`runc spec`'s default config, made once."""
    d = tempfile.mkdtemp(prefix="tc-keeper-spec-")
    try:
        subprocess.run(["runc", "spec"], cwd=d, check=True)
        with open(os.path.join(d, "config.json")) as f:
            return json.load(f)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def hugetlb_on_v1_needed():
    """Hybrid cgroups (v1 controllers, cgroup2 on /sys/fs/cgroup/unified) with hugetlb
    only on v2: the layout Debian's crun 1.8.1 refuses."""
    if not os.path.ismount("/sys/fs/cgroup/unified"):
        return False
    if os.path.ismount("/sys/fs/cgroup/hugetlb"):
        return False
    with open("/proc/filesystems") as f:
        if "cgroup\n" not in f.read().replace("\tcgroup2\n", ""):
            return False
    with open("/sys/fs/cgroup/unified/cgroup.controllers") as f:
        return "hugetlb" in f.read().split()


def ensure_hugetlb_v1():
    if not hugetlb_on_v1_needed():
        return
    os.makedirs("/sys/fs/cgroup/hugetlb", exist_ok=True)
    r = subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup",
                        "/sys/fs/cgroup/hugetlb"], capture_output=True, text=True)
    if r.returncode != 0:
        print("mount hugetlb on v1 failed: %s" % r.stderr.strip())


def runtime_works(runtime, spec, rootfs):
    """Can `runtime run` a trivial container here? (None, or why not.)"""
    tmp = tempfile.mkdtemp(prefix="tc-keeper-probe-")
    try:
        bundle = make_bundle(tmp, spec, rootfs, ["true"], cid="probe")
        r = subprocess.run([runtime, "--root", os.path.join(tmp, "root"), "run", "--bundle",
                            bundle, "tc-keeper-probe-%d" % os.getpid()],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        return None if r.returncode == 0 else (r.stderr.strip() or r.stdout.strip())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session", params=["runc", "crun"])
def runtime(request, base_spec, rootfs):
    name = request.param
    path = shutil.which(name)
    if not path:
        pytest.skip("%s is not installed" % name)
    why = runtime_works(path, base_spec, rootfs)
    if why and name == "crun":
        ensure_hugetlb_v1()
        why = runtime_works(path, base_spec, rootfs)
    if why:
        pytest.skip("%s cannot run containers here: %s" % (name, why))
    yield path
    for ctl in ("memory", "pids", "cpu", "cpuacct", "cpuset", "blkio", "devices", "freezer",
                "hugetlb", "systemd", "unified", ""):
        d = os.path.join("/sys/fs/cgroup", ctl, CGROUP_PARENT)
        try:
            os.rmdir(d)
        except OSError:
            pass


def make_bundle(tmp, spec, rootfs, args, cid, tty=False, memory=None):
    bundle = os.path.join(tmp, "bundle-" + cid)
    os.makedirs(bundle)
    c = json.loads(json.dumps(spec))
    c["root"] = {"path": rootfs, "readonly": True}
    proc = c["process"]
    proc["terminal"] = tty
    proc["args"] = args
    # No CAP_SYS_RESOURCE here: a negative oomScoreAdj would fail with EPERM.
    proc.pop("oomScoreAdj", None)
    c["linux"]["cgroupsPath"] = "/%s/%s" % (CGROUP_PARENT, cid)
    if memory:
        res = c["linux"].setdefault("resources", {})
        res["memory"] = {"limit": memory, "swap": memory}
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(c, f)
    return bundle


# --------------------------------------------------------------------------
# The keeper as the daemon sees it
# --------------------------------------------------------------------------

class Keeper:
    def __init__(self, keeper_bin, runtime, tmp, cid, bundle, tty=False, stdin=False,
                 cgroup=True, extra_fd=None):
        self.runtime = runtime
        self.cid = cid
        self.tmp = tmp
        self.runtime_root = os.path.join(tmp, "runtime-root")
        self.state = os.path.join(tmp, "state-" + cid)
        self.log = os.path.join(tmp, cid + ".log")
        os.makedirs(self.state, mode=0o700)
        self.stderr_path = os.path.join(tmp, cid + ".keeper.err")
        argv = [keeper_bin, "--id", cid, "--bundle", bundle, "--runtime", runtime,
                "--runtime-root", self.runtime_root, "--state-dir", self.state,
                "--log-path", self.log]
        if tty:
            argv.append("--tty")
        if stdin:
            argv.append("--stdin")
        if cgroup:
            argv += ["--cgroup-path", "/%s/%s" % (CGROUP_PARENT, cid)]
        r, w = os.pipe()
        keep = [3]
        if extra_fd is not None:
            keep.append(extra_fd)

        def status_on_fd3():
            if w != 3:
                os.dup2(w, 3, inheritable=True)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         pass_fds=keep, preexec_fn=status_on_fd3)
        os.close(w)
        self.status_fd = r
        self.created = False

    @property
    def pid(self):
        return self.proc.pid

    def status_line(self, timeout=STATUS_TIMEOUT):
        """The one line on fd 3, then EOF (the keeper closes it after reporting)."""
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("no status line from the keeper in %.0fs: %r; stderr: %s"
                            % (timeout, data, self.stderr()))
            ready, _, _ = select.select([self.status_fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.status_fd, 4096)
            if not chunk:
                break
            data += chunk
        os.close(self.status_fd)
        self.status_fd = -1
        assert data.endswith(b"\n") and data.count(b"\n") == 1, data
        return data[:-1].decode()

    def expect_created(self):
        line = self.status_line()
        m = re.fullmatch(r"created pid=(\d+)", line)
        assert m, "keeper failed: %s; stderr: %s" % (line, self.stderr())
        self.created = True
        self.init_pid = int(m.group(1))
        return self.init_pid

    def rt(self, *args, check=True):
        return subprocess.run([self.runtime, "--root", self.runtime_root] + list(args),
                              capture_output=True, text=True, timeout=30, check=check)

    def start(self):
        self.rt("start", self.cid)

    def kill(self, sig="KILL"):
        self.rt("kill", self.cid, sig)

    def ctl(self, *lines):
        """Send command lines on ctl.sock; the reply line to each."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(os.path.join(self.state, "ctl.sock"))
        f = s.makefile("rb")
        replies = []
        for line in lines:
            s.sendall(line.encode() + b"\n")
            replies.append(f.readline().decode().rstrip("\n"))
        f.close()
        s.close()
        return replies[0] if len(replies) == 1 else replies

    def wait(self, timeout=EXIT_TIMEOUT):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail("keeper still running after %.0fs; stderr: %s" % (timeout, self.stderr()))

    def exit_json(self):
        with open(os.path.join(self.state, "exit.json")) as f:
            return json.load(f)

    def keeper_json(self):
        with open(os.path.join(self.state, "keeper.json")) as f:
            return json.load(f)

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def rss_anon_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
        raise AssertionError("no RssAnon in /proc/%d/status" % self.pid)

    def cleanup(self):
        if self.status_fd >= 0:
            os.close(self.status_fd)
            self.status_fd = -1
        self.rt("delete", "-f", self.cid, check=False)
        if self.proc.poll() is None:
            self.proc.kill()  # our own child, by pid
            self.proc.wait()


def records(path, settled=True):
    """The log file as (stream, tag, content) tuples, checking every record's shape.

    settled=False while the keeper may still be writing: a record being
    appended at this moment is left out, as a tailing reader would."""
    with open(path, "rb") as f:
        data = f.read()
    if not settled:
        data = data[:data.rfind(b"\n") + 1]
    assert data == b"" or data.endswith(b"\n"), data[-100:]
    out = []
    for line in data.split(b"\n")[:-1]:
        m = RECORD.match(line)
        assert m, "malformed CRI log record: %r" % line[:200]
        out.append((m.group(2).decode(), m.group(3).decode(), m.group(4)))
    return out


def log_has(path, content):
    try:
        return any(r[2] == content for r in records(path, settled=False))
    except FileNotFoundError:
        return False


@pytest.fixture
def keepers(keeper_bin, runtime, base_spec, rootfs, request):
    """Factory: keepers(args, ...) builds a bundle and starts a keeper for it."""
    tmp = tempfile.mkdtemp(prefix="tc-keeper-")
    made = []
    counter = [0]

    def factory(args, tty=False, stdin=False, memory=None, cgroup=True, bundle=None,
                extra_fd=None, runtime=runtime):
        counter[0] += 1
        cid = "tck-%d-%d-%s" % (os.getpid(), counter[0], os.path.basename(runtime))
        if bundle is None:
            bundle = make_bundle(tmp, base_spec, rootfs, args, cid, tty=tty, memory=memory)
        k = Keeper(keeper_bin, runtime, tmp, cid, bundle, tty=tty, stdin=stdin, cgroup=cgroup,
                   extra_fd=extra_fd)
        made.append(k)
        return k

    factory.tmp = tmp
    yield factory
    failed = getattr(request.node, "_tinycri_rep_call", False)  # set by conftest
    reports = []
    for k in made:
        if failed:
            print("keeper %s stderr:\n%s" % (k.cid, k.stderr()))
        k.cleanup()
        report = sanitizer_report(k.stderr())
        if report:
            reports.append("keeper %s: %s" % (k.cid, report))
    shutil.rmtree(tmp, ignore_errors=True)
    if reports:
        pytest.fail("\n\n".join(reports), pytrace=False)


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

def test_stdout_stderr_and_exit_code(keepers):
    k = keepers(["sh", "-c", "echo out1; echo err1 >&2; echo; echo out2; printf tail; exit 3"])
    before = time.time_ns()
    init = k.expect_created()
    kj = k.keeper_json()
    assert kj["keeperPid"] == k.pid
    assert kj["initPid"] == init
    assert before <= kj["created"] <= time.time_ns()
    # Created, not started: nothing has run yet.
    assert records(k.log) == []
    assert not os.path.exists(os.path.join(k.state, "exit.json"))
    k.start()
    assert k.wait() == 0
    recs = records(k.log)
    assert [r for r in recs if r[0] == "stdout"] == [
        ("stdout", "F", b"out1"), ("stdout", "F", b""), ("stdout", "F", b"out2"),
        ("stdout", "P", b"tail")]
    assert [r for r in recs if r[0] == "stderr"] == [("stderr", "F", b"err1")]
    ej = k.exit_json()
    assert ej["exitCode"] == 3
    assert ej["signal"] == 0
    assert ej["oomKilled"] is False
    assert kj["created"] <= ej["finishedAt"] <= time.time_ns()
    # The keeper removes its sockets on exit.
    assert not os.path.exists(os.path.join(k.state, "ctl.sock"))


def test_long_lines_are_split_at_16k(keepers):
    # 40000 bytes of 'a' then a newline, on stdout: P 16384, P 16384, F 7232.
    k = keepers(["sh", "-c", "dd if=/dev/zero bs=40000 count=1 2>/dev/null | tr '\\0' a; echo"])
    k.expect_created()
    k.start()
    assert k.wait() == 0
    recs = records(k.log)
    assert [(r[0], r[1], len(r[2])) for r in recs] == [
        ("stdout", "P", 16384), ("stdout", "P", 16384), ("stdout", "F", 7232)]
    assert all(set(r[2]) == {ord("a")} for r in recs)


def test_tty_output_is_stdout(keepers):
    k = keepers(["sh", "-c", "echo hi; stty size; echo bye >&2"], tty=True)
    k.expect_created()
    assert k.ctl("resize 100 40") == "ok"
    k.start()
    assert k.wait() == 0
    recs = records(k.log)
    # A tty has no stderr, and its "\r\n" line ends lose the '\r'.
    assert recs == [("stdout", "F", b"hi"), ("stdout", "F", b"40 100"), ("stdout", "F", b"bye")]
    assert k.exit_json()["exitCode"] == 0
    assert not os.path.exists(os.path.join(k.state, "console.sock"))


def test_killed_container_records_signal(keepers):
    k = keepers(["sleep", "100"])
    init = k.expect_created()
    k.start()
    # The container's processes start with default signal handling, not the keeper's.
    with open("/proc/%d/status" % init) as f:
        status = dict(line.split(":", 1) for line in f)
    assert int(status["SigIgn"].strip(), 16) == 0
    assert int(status["SigBlk"].strip(), 16) == 0
    assert k.proc.poll() is None
    k.kill("KILL")
    assert k.wait() == 0
    ej = k.exit_json()
    assert ej["signal"] == 9
    assert ej["exitCode"] == 137
    assert ej["oomKilled"] is False


def test_reopen_after_rotation_and_stdin_close(keepers):
    # `cat` holds the container until stdin closes; "after" must land in the new file.
    k = keepers(["sh", "-c", "echo before; cat; echo after"], stdin=True)
    k.expect_created()
    k.start()
    wait_until(lambda: log_has(k.log, b"before"), 10, what="'before' in the log")
    rotated = k.log + ".1"
    os.rename(k.log, rotated)
    assert k.ctl("reopen") == "ok"
    assert os.path.exists(k.log)
    assert stat.S_IMODE(os.stat(k.log).st_mode) == 0o640
    assert k.ctl("stdin-close") == "ok"
    assert k.wait() == 0
    assert records(rotated) == [("stdout", "F", b"before")]
    assert records(k.log) == [("stdout", "F", b"after")]
    assert k.exit_json()["exitCode"] == 0


def test_keeper_survives_sigterm(keepers):
    k = keepers(["sleep", "100"])
    k.expect_created()
    k.start()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        os.kill(k.pid, sig)
    time.sleep(0.3)
    assert k.proc.poll() is None, "keeper died of a signal: %s" % k.stderr()
    assert json.loads(k.rt("state", k.cid).stdout)["status"] == "running"
    assert k.ctl("reopen") == "ok"
    k.kill("KILL")
    assert k.wait() == 0
    assert k.exit_json()["signal"] == 9


def test_daemon_gone_before_the_report(keepers):
    # tinycrid died before reading fd 3: the keeper carries on regardless.
    k = keepers(["sh", "-c", "echo alive; sleep 100"])
    os.close(k.status_fd)
    k.status_fd = -1
    kj_path = os.path.join(k.state, "keeper.json")
    wait_until(lambda: os.path.exists(kj_path), STATUS_TIMEOUT, what="keeper.json")
    k.start()
    wait_until(lambda: log_has(k.log, b"alive"), 10, what="'alive' in the log")
    k.kill("KILL")
    assert k.wait() == 0
    assert k.exit_json()["signal"] == 9
    assert "Broken pipe" in k.stderr()


def test_control_socket(keepers):
    k = keepers(["sleep", "100"])
    k.expect_created()
    sock = os.path.join(k.state, "ctl.sock")
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    replies = k.ctl("bogus", "resize 80 24", "resize x", "stdin-close", "reopen")
    assert replies[0].startswith("error unknown")
    assert replies[1] == "error the container has no terminal"
    assert replies[2].startswith("error usage")
    assert replies[3] == "error the container has no stdin"
    assert replies[4] == "ok"
    # An over-long line closes that connection, and the keeper carries on.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock)
    s.sendall(b"x" * 300)
    assert s.recv(100).startswith(b"error line too long")
    s.close()
    assert k.ctl("reopen") == "ok"
    k.kill("KILL")
    assert k.wait() == 0


def test_inherited_fds_are_closed(keepers):
    leak = os.open(os.path.join(keepers.tmp, "leaked-fd"), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        k = keepers(["sleep", "100"], extra_fd=leak)
        init = k.expect_created()
    finally:
        os.close(leak)
    targets = []
    for pid in (k.pid, init):
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                targets.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
            except OSError:
                pass
    assert not any(t.endswith("leaked-fd") for t in targets), targets
    k.kill("KILL")
    assert k.wait() == 0


def test_runtime_starts_with_default_signals(keepers, runtime):
    # The runtime (and so the container) must not inherit the keeper's ignored
    # signals or blocked mask; runc and crun happen to reset them in the
    # container, so look at the runtime process itself through a wrapper.
    report = os.path.join(keepers.tmp, "runtime-signals")
    wrapper = os.path.join(keepers.tmp, "runtime-wrapper")
    # Shell builtins only: a shell that forks (for grep) blocks every signal around the
    # fork, and a child reading /proc/$$/status could see that passing mask.
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nwhile read -r key value; do case $key in SigIgn:|SigBlk:) "
                "echo \"$key$value\" >> %s;; esac; done < /proc/$$/status\nexec %s \"$@\"\n"
                % (report, runtime))
    os.chmod(wrapper, 0o755)
    k = keepers(["true"], runtime=wrapper)
    k.expect_created()
    k.start()
    assert k.wait() == 0
    # The first two lines come from `create`, which the keeper runs; later ones
    # from commands this test runs itself (they inherit pytest's signal state).
    with open(report) as f:
        sigs = dict(line.split(":", 1) for line in f.readlines()[:2])
    assert int(sigs["SigIgn"], 16) == 0, sigs
    assert int(sigs["SigBlk"], 16) == 0, sigs


def test_create_failure_is_reported(keepers):
    bundle = os.path.join(keepers.tmp, "no-such-bundle")
    os.makedirs(bundle)
    k = keepers(None, bundle=bundle)
    line = k.status_line()
    assert line.startswith("error runtime create exited with status "), line
    assert "config.json" in line, line
    assert k.wait() == 1
    assert not os.path.exists(os.path.join(k.state, "exit.json"))
    assert not os.path.exists(os.path.join(k.state, "keeper.json"))


def test_usage_error(keeper_bin):
    r = subprocess.run([keeper_bin, "--id", "x"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "usage" in r.stderr


def test_oom_killed(keepers):
    # The string doubles until the 16 MiB limit ends the shell.
    k = keepers(["sh", "-c", "x=0123456789abcdef; while true; do x=\"$x$x\"; done"],
                memory=16 * MiB)
    k.expect_created()
    k.start()
    assert k.wait(timeout=60) == 0
    ej = k.exit_json()
    assert ej["oomKilled"] is True, ej
    assert ej["signal"] == 9


def check_rss(k, what):
    kib = k.rss_anon_kib()
    print("keeper RssAnon (%s, %s): %d KiB" % (os.path.basename(k.runtime), what, kib))
    if is_sanitized(k.proc.args[0]):
        pytest.skip("sanitizer build: RssAnon %d KiB is not meaningful" % kib)
    assert kib <= RSS_BUDGET_KIB, "keeper RssAnon %d KiB > %d KiB (%s)" % (
        kib, RSS_BUDGET_KIB, what)


def test_rss_while_logging(keepers):
    k = keepers(["sh", "-c", "i=0; while [ $i -lt 500 ]; do echo line $i; echo err $i >&2; "
                 "i=$((i+1)); done; echo done; sleep 100"])
    k.expect_created()
    k.start()
    wait_until(lambda: log_has(k.log, b"done"), 20, what="'done' in the log")
    check_rss(k, "1000 short lines")
    k.kill("KILL")
    assert k.wait() == 0


def test_rss_worst_case(keepers):
    # Both streams full of 16 KiB pieces and unfinished lines: every buffer in use.
    k = keepers(["sh", "-c",
                 "dd if=/dev/zero bs=64k count=64 2>/dev/null | tr '\\0' a; "
                 "dd if=/dev/zero bs=64k count=64 2>/dev/null | tr '\\0' b >&2; "
                 "printf 'unfinished'; printf 'unfinished' >&2; sleep 100"])
    k.expect_created()
    k.start()
    total = 2 * 64 * 64 * KiB

    def logged():
        return sum(len(r[2]) for r in records(k.log, settled=False)) >= total - 2 * 16 * KiB
    wait_until(logged, 30, what="4 MiB per stream in the log")
    check_rss(k, "8 MiB without newlines")
    k.kill("KILL")
    assert k.wait() == 0
    recs = records(k.log)
    assert sum(len(r[2]) for r in recs) == total + 20
    assert all(r[1] == "P" for r in recs)
    assert {len(r[2]) for r in recs} <= {16384, 10, total // 2 % 16384 + 10}
