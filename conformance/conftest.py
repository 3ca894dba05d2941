# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the conformance suite: a real tinycrid and a real gRPC client.

The daemon under test is $TINYCRID (an absolute path; scripts/test sets it) or
<repo>/build/tinycrid. Python stubs are generated from proto/api.proto with
grpc_tools.protoc once per test session, into a temporary directory, so the
suite always speaks the schema the daemon was built from.

`daemon` is a factory: `d = daemon()` starts a tinycrid on a fresh temporary
root, state dir and socket with a generated config file, and returns once
Version answers. `daemon(start=False)` gives the same object unstarted, for
tests that drive the process themselves. Every daemon a test started is
stopped with SIGTERM afterwards and must exit 0; its stderr is attached to the
report of a failed test.
"""
import configparser
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO = os.path.join(REPO, "proto", "api.proto")

START_TIMEOUT = 10.0  # seconds until a new daemon must answer Version
STOP_TIMEOUT = 15.0   # seconds a daemon gets to exit after SIGTERM (sanitizer builds are slow)
RPC_TIMEOUT = 10.0    # default deadline of each call the suite makes

MiB = 1 << 20


# --------------------------------------------------------------------------
# Generated stubs
# --------------------------------------------------------------------------

class Api:
    """The generated modules: .pb2 (messages) and .grpc (stubs), plus method lookup."""

    def __init__(self, pb2, pb2_grpc):
        self.pb2 = pb2
        self.grpc = pb2_grpc

    def services(self):
        return list(self.pb2.DESCRIPTOR.services_by_name.values())

    def methods(self):
        """Every (service descriptor, method descriptor) of the schema, in file order."""
        return [(s, m) for s in self.services() for m in s.methods]

    def path(self, service, method):
        return "/%s/%s" % (service.full_name, method.name)

    def message(self, type_name):
        return getattr(self.pb2, type_name)


@functools.lru_cache(maxsize=None)
def load_api():
    """Generate api_pb2/api_pb2_grpc from proto/api.proto once and import them.

    The generated files live in a temporary directory only until they are imported,
    so nothing is left behind however the process ends."""
    from grpc_tools import protoc  # python3-grpc-tools

    gen_dir = tempfile.mkdtemp(prefix="tc-gen-", dir="/tmp")
    try:
        rc = protoc.main(["grpc_tools.protoc", "-I" + os.path.dirname(PROTO),
                          "--python_out=" + gen_dir, "--grpc_python_out=" + gen_dir, PROTO])
        if rc != 0:
            raise RuntimeError("grpc_tools.protoc failed on %s (status %d)" % (PROTO, rc))
        sys.path.insert(0, gen_dir)
        try:
            import api_pb2  # noqa: E402
            import api_pb2_grpc  # noqa: E402
        finally:
            sys.path.remove(gen_dir)
    finally:
        shutil.rmtree(gen_dir, ignore_errors=True)
    return Api(api_pb2, api_pb2_grpc)


@pytest.fixture(scope="session")
def api():
    return load_api()


# --------------------------------------------------------------------------
# The binary
# --------------------------------------------------------------------------

def tinycrid_path():
    path = os.environ.get("TINYCRID") or os.path.join(REPO, "build", "tinycrid")
    if not os.path.isabs(path):
        raise pytest.UsageError("TINYCRID must be an absolute path, got %r" % path)
    return path


@pytest.fixture(scope="session")
def tinycrid():
    path = tinycrid_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("tinycrid not found at %s: build it first (scripts/test), "
                    "or point TINYCRID at it" % path, pytrace=False)
    return path


def pytest_report_header(config):
    return "tinycrid: %s" % tinycrid_path()


# --------------------------------------------------------------------------
# Small helpers shared by the tests
# --------------------------------------------------------------------------

def wait_until(predicate, timeout, interval=0.01, what="condition"):
    """Poll predicate() until it returns a true value; return it, or fail after timeout.

    what (a string, or a callable giving one) says in the failure what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail("timed out after %.1fs waiting for %s"
                        % (timeout, what() if callable(what) else what))
        time.sleep(interval)
        interval = min(interval * 2, 0.1)


def unix_connect(path, timeout=5.0):
    """A raw AF_UNIX stream connection to path (no HTTP/2 spoken)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except OSError:
        s.close()
        raise
    return s


def can_connect(path):
    try:
        unix_connect(path, timeout=1.0).close()
        return True
    except OSError:
        return False


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "SUMMARY: UndefinedBehaviorSanitizer")


def daemon_env():
    """The environment for tinycrid: sanitizer reports end with status 23, which no
    expected exit (0, or 1 for a refused start) can be mistaken for."""
    env = dict(os.environ)
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        opts = env.get(var, "")
        if "exitcode=" not in opts:
            env[var] = (opts + ":" if opts else "") + "exitcode=23"
    return env


def sanitizer_report(text):
    """The sanitizer report in a stderr text, or None."""
    for mark in SANITIZER_MARKS:
        i = text.find(mark)
        if i >= 0:
            return text[text.rfind("\n", 0, i) + 1:]
    return None


def channel_options(**extra):
    opts = {
        # Each channel gets its own connection; without this, grpc shares one
        # subchannel among channels with the same target and arguments.
        "grpc.use_local_subchannel_pool": 1,
        "grpc.max_send_message_length": 64 * MiB,
        "grpc.max_receive_message_length": 64 * MiB,
        # Fail fast while the daemon is down instead of backing off for seconds.
        "grpc.initial_reconnect_backoff_ms": 50,
        "grpc.min_reconnect_backoff_ms": 50,
        "grpc.max_reconnect_backoff_ms": 200,
    }
    opts.update(extra)
    return list(opts.items())


# --------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------

class Daemon:
    """One tinycrid process on its own temporary root, state dir and socket.

    Paths (all under one mkdtemp dir in /tmp, short enough for AF_UNIX):
      .socket      <tmp>/sock/tinycri.sock  (its parent is left for the daemon to create)
      .root        <tmp>/root
      .state       <tmp>/state
      .cni_dir     <tmp>/cni                (created empty; tests fill it)
      .config_path <tmp>/tinycri.conf
    """

    def __init__(self, binary, api, config=None):
        self.binary = binary
        self.api = api
        self.tmp = tempfile.mkdtemp(prefix="tc-", dir="/tmp")
        self.socket = os.path.join(self.tmp, "sock", "tinycri.sock")
        self.root = os.path.join(self.tmp, "root")
        self.state = os.path.join(self.tmp, "state")
        self.cni_dir = os.path.join(self.tmp, "cni")
        os.mkdir(self.cni_dir)
        self.config_path = os.path.join(self.tmp, "tinycri.conf")
        self.stderr_path = os.path.join(self.tmp, "stderr.log")
        self.stdout_path = os.path.join(self.tmp, "stdout.log")
        self.proc = None
        self.stopped_by_test = False
        self.history = []  # stderr of earlier runs of this object (restarts)
        self._channels = []
        self._main_channel = None
        self.write_config(config or {})

    # -- configuration ------------------------------------------------------

    def config_sections(self, extra=None):
        sections = {
            "server": {
                "socket": self.socket,
                "root_dir": self.root,
                "state_dir": self.state,
                "log_level": "debug",
            },
            "cni": {"conf_dir": self.cni_dir},
        }
        for name, keys in (extra or {}).items():
            sections.setdefault(name, {}).update(keys)
        return sections

    def write_config(self, extra=None, text=None):
        """Write the config file: the generated one merged with extra, or text verbatim."""
        if text is None:
            cp = configparser.ConfigParser(interpolation=None)
            cp.optionxform = str
            cp.read_dict(self.config_sections(extra))
            with open(self.config_path, "w") as f:
                cp.write(f)
        else:
            with open(self.config_path, "w") as f:
                f.write(text)
        return self.config_path

    def write_cni(self, name, content):
        """Write one file into the CNI conf dir (content: str, or JSON-able object)."""
        import json
        if not isinstance(content, str):
            content = json.dumps(content, indent=2)
        path = os.path.join(self.cni_dir, name)
        with open(path, "w") as f:
            f.write(content)
        return path

    # -- process ------------------------------------------------------------

    def start(self, args=None, config=True, wait=True):
        """Start tinycrid (with --config unless config=False, then args); wait until it serves."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if self.proc is not None:
            self.history.append(self.stderr_text())
        argv = [self.binary]
        if config:
            argv += ["--config", self.config_path]
        argv += list(args or [])
        self.argv = argv
        self.stopped_by_test = False
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=daemon_env(), start_new_session=True, close_fds=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=START_TIMEOUT, socket_path=None):
        """Wait until the socket accepts and Version answers; fail with stderr if not."""
        path = socket_path or self.socket
        deadline = time.monotonic() + timeout
        last = "socket %s never accepted a connection" % path
        interval = 0.005
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                pytest.fail("tinycrid exited with status %d during start-up\n"
                            "argv: %s\n--- stderr ---\n%s"
                            % (rc, " ".join(self.argv), self.stderr_text()), pytrace=False)
            if can_connect(path):
                ch = grpc.insecure_channel("unix:" + path, options=channel_options())
                try:
                    stub = self.api.grpc.RuntimeServiceStub(ch)
                    stub.Version(self.api.pb2.VersionRequest(version="v1"),
                                 timeout=max(0.5, min(2.0, deadline - time.monotonic())))
                    return
                except grpc.RpcError as e:
                    last = "Version failed: %s %s" % (e.code(), e.details())
                finally:
                    ch.close()
            time.sleep(interval)
            interval = min(interval * 2, 0.1)
        pytest.fail("tinycrid did not serve within %.0fs (%s)\nargv: %s\n--- stderr ---\n%s"
                    % (timeout, last, " ".join(self.argv), self.stderr_text()), pytrace=False)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Wait for the process to exit and return its status; SIGKILL and fail if it hangs.

        The test takes charge of the exit status: teardown no longer checks it."""
        self.stopped_by_test = True
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("tinycrid (pid %d) did not exit within %.0fs; killed\n--- stderr ---\n%s"
                        % (self.proc.pid, timeout, self.stderr_text()), pytrace=False)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Stop the daemon as the test's own step; returns the exit status."""
        self.stopped_by_test = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout_text(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- clients ------------------------------------------------------------

    def channel(self, **options):
        """A new gRPC channel to the daemon (own connection); closed at teardown."""
        ch = grpc.insecure_channel("unix:" + self.socket, options=channel_options(**options))
        self._channels.append(ch)
        return ch

    def _main(self):
        if self._main_channel is None:
            self._main_channel = self.channel()
        return self._main_channel

    @property
    def runtime(self):
        return self.api.grpc.RuntimeServiceStub(self._main())

    @property
    def image(self):
        return self.api.grpc.ImageServiceStub(self._main())

    def version(self, stub=None):
        """One Version call (on the shared channel unless stub is given)."""
        stub = stub or self.runtime
        return stub.Version(self.api.pb2.VersionRequest(version="v1"), timeout=RPC_TIMEOUT)

    def status(self, verbose=False):
        return self.runtime.Status(self.api.pb2.StatusRequest(verbose=verbose),
                                   timeout=RPC_TIMEOUT)

    def close_channels(self):
        for ch in self._channels:
            ch.close()
        self._channels = []
        self._main_channel = None

    # -- teardown -------------------------------------------------------------

    def teardown(self):
        """Close clients, SIGTERM the daemon, check it exits 0. Returns a failure text or None."""
        self.close_channels()
        problem = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=STOP_TIMEOUT)
                if rc != 0 and not self.stopped_by_test:
                    problem = "tinycrid exited with status %d after SIGTERM" % rc
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problem = "tinycrid did not exit within %.0fs of SIGTERM; killed" % STOP_TIMEOUT
        elif self.proc is not None and not self.stopped_by_test:
            rc = self.proc.returncode
            if rc != 0:
                problem = "tinycrid died during the test with status %d" % rc
        for text in self.history + [self.stderr_text()]:
            if sanitizer_report(text):
                problem = (problem + "; " if problem else "") + "a sanitizer reported an error"
                break
        return problem

    def cleanup_files(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def daemon(request, tinycrid, api):
    """Factory: daemon(config={section: {key: value}}, start=True, args=[]) -> Daemon."""
    started = []
    request.node._tinycri_daemons = started

    def make(config=None, start=True, args=None):
        d = Daemon(tinycrid, api, config)
        started.append(d)
        if start:
            d.start(args=args)
        return d

    yield make

    problems = []
    for d in started:
        p = d.teardown()
        if p:
            problems.append("%s (its stderr is below; files in %s)" % (p, d.tmp))
    failed = any(getattr(request.node, "_tinycri_rep_" + w, None) for w in ("setup", "call"))
    if not problems and not failed:
        for d in started:
            d.cleanup_files()
    else:
        # Keep nothing big around, but leave the logs for a look after a failure.
        for d in started:
            shutil.rmtree(d.root, ignore_errors=True)
            shutil.rmtree(d.state, ignore_errors=True)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        setattr(item, "_tinycri_rep_" + rep.when, True)
        for i, d in enumerate(getattr(item, "_tinycri_daemons", [])):
            text = "".join("%s\n--- (restarted) ---\n" % h for h in d.history) + d.stderr_text()
            lines = text.splitlines()
            if len(lines) > 300:
                lines = ["... (%d lines cut; full log in %s)" % (len(lines) - 300, d.stderr_path)] \
                    + lines[-300:]
            rep.sections.append(("tinycrid #%d stderr (%s)" % (i, d.tmp), "\n".join(lines)))

pytest_plugins = ["conftest_images"]  # image tests: registries, proxy, pushed images
