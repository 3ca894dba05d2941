# SPDX-License-Identifier: Apache-2.0
"""The tinycrid process: command line, config file, socket, lock, signals."""
import os
import signal
import socket
import stat
import subprocess
import time

import grpc
import pytest

from conftest import can_connect, channel_options, daemon_env, sanitizer_report, unix_connect
from h2raw import (DATA, END_HEADERS, END_STREAM, HEADERS, PREFACE, SETTINGS, frame,
                   grpc_headers, grpc_message)


def run_cli(binary, *args, timeout=10):
    r = subprocess.run([binary, *args], stdin=subprocess.DEVNULL, capture_output=True,
                       env=daemon_env(), timeout=timeout, text=True, errors="replace")
    assert not sanitizer_report(r.stderr), r.stderr
    return r


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def assert_serves(d, path=None):
    """A fresh channel (fresh connection) to the socket gets a Version answer."""
    ch = grpc.insecure_channel("unix:" + (path or d.socket), options=channel_options())
    try:
        v = d.version(d.api.grpc.RuntimeServiceStub(ch))
        assert v.runtime_name == "tinycri"
    finally:
        ch.close()


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def test_version_flag(tinycrid):
    r = run_cli(tinycrid, "--version")
    assert r.returncode == 0, r.stderr
    assert "0.1.0" in r.stdout


def test_help_flag(tinycrid):
    r = run_cli(tinycrid, "--help")
    assert r.returncode == 0, r.stderr
    for opt in ("--config", "--socket", "--root", "--state-dir", "--log-level"):
        assert opt in r.stdout, "%s missing from --help" % opt


def test_unknown_option_fails(tinycrid):
    r = run_cli(tinycrid, "--no-such-option")
    assert r.returncode != 0
    assert r.stderr.strip(), "no message for an unknown option"


def test_bad_log_level_fails(daemon):
    d = daemon(start=False)
    d.start(args=["--log-level", "loud"], wait=False)
    assert d.wait_exit(10) != 0
    assert not os.path.lexists(d.socket)


def test_cli_overrides_config_file(daemon):
    d = daemon(start=False)
    other = os.path.join(d.tmp, "cli", "other.sock")
    d.start(args=["--socket", other], wait=False)
    d.wait_ready(socket_path=other)
    assert not os.path.lexists(d.socket), "the config file's socket was used despite --socket"
    assert_serves(d, other)
    assert d.stop() == 0
    assert not os.path.lexists(other)


def test_command_line_only_without_config_file(daemon):
    d = daemon(start=False)
    d.start(config=False, wait=False, args=[
        "--socket", d.socket, "--root", d.root, "--state-dir", d.state, "--log-level", "debug"])
    d.wait_ready()
    assert os.path.isdir(d.root)
    assert os.path.isdir(d.state)
    assert d.stop() == 0


def test_log_level_error_is_quiet_on_clean_run(daemon):
    d = daemon(start=False)
    d.start(args=["--log-level", "error"])
    d.version()
    d.close_channels()
    assert d.stop() == 0
    assert d.stderr_text().strip() == "", "log_level=error printed: %s" % d.stderr_text()


# --------------------------------------------------------------------------
# Config file errors
# --------------------------------------------------------------------------

def server_head(d):
    """Four lines that keep a wrongly started daemon inside the test's temp dir."""
    return ("[server]\nsocket = %s\nroot_dir = %s\nstate_dir = %s\n"
            % (d.socket, d.root, d.state))


BAD_CONFIGS = [
    # (id, text after the 4 [server] lines, line number of the error, text the message names)
    ("unknown-key", "no_such_key = 1\n", 5, "no_such_key"),
    ("bad-log-level", "log_level = loud\n", 5, "log_level"),
    ("bad-number", "max_recv_message_size = lots\n", 5, "max_recv_message_size"),
    ("negative-timeout", "shutdown_timeout = -5\n", 5, "shutdown_timeout"),
    ("bad-cgroup-driver", "\n[runtime]\ncgroup_driver = upstart\n", 7, "cgroup_driver"),
    ("unknown-section", "[nosuch]\nkey = 1\n", 5, "nosuch"),
    ("syntax-error", "this line has no equals sign\n", 5, None),
]


@pytest.mark.parametrize("tail,line,name", [b[1:] for b in BAD_CONFIGS],
                         ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_file_stops_startup(daemon, tail, line, name):
    d = daemon(start=False)
    d.write_config(text=server_head(d) + tail)
    d.start(wait=False, args=["--socket", d.socket, "--root", d.root, "--state-dir", d.state])
    rc = d.wait_exit(10)
    err = d.stderr_text()
    assert rc == 1, "exit status %d, stderr:\n%s" % (rc, err)
    assert "%s:%d:" % (d.config_path, line) in err, "no '<file>:<line>:' in stderr:\n" + err
    if name:
        assert name in err
    assert not os.path.lexists(d.socket)


def test_missing_config_file(daemon):
    d = daemon(start=False)
    os.unlink(d.config_path)
    d.start(wait=False)
    rc = d.wait_exit(10)
    assert rc == 1, d.stderr_text()
    assert d.config_path in d.stderr_text()
    assert not os.path.lexists(d.socket)


# --------------------------------------------------------------------------
# Socket and directories
# --------------------------------------------------------------------------

def test_socket_mode_0660_and_dir_0700(daemon):
    d = daemon()
    st = os.lstat(d.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert mode(d.socket) == 0o660, oct(mode(d.socket))
    assert mode(os.path.dirname(d.socket)) == 0o700, oct(mode(os.path.dirname(d.socket)))


def test_root_and_state_dirs_created_private(daemon):
    d = daemon()
    for path in (d.root, d.state):
        assert os.path.isdir(path)
        assert mode(path) & 0o022 == 0, "%s is %s" % (path, oct(mode(path)))


def test_stale_socket_file_is_replaced(daemon):
    d = daemon(start=False)
    os.mkdir(os.path.dirname(d.socket), 0o700)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(d.socket)
    s.close()  # the file stays, nobody listens: a dead instance's socket
    assert stat.S_ISSOCK(os.lstat(d.socket).st_mode) and not can_connect(d.socket)
    d.start()
    assert_serves(d)
    assert mode(d.socket) == 0o660


def test_restart_after_sigkill(daemon):
    d = daemon()
    d.proc.kill()
    assert d.wait_exit() == -signal.SIGKILL
    assert os.path.lexists(d.socket)  # left behind
    d.start()  # the lock died with the process; the stale socket is replaced
    assert_serves(d)


def test_restart_after_clean_stop(daemon):
    d = daemon()
    d.close_channels()
    assert d.stop() == 0
    d.start()
    assert_serves(d)


# --------------------------------------------------------------------------
# One instance per root
# --------------------------------------------------------------------------

def test_second_instance_on_same_root_refuses(daemon):
    first = daemon()
    second = daemon(start=False, config={"server": {"root_dir": first.root}})
    second.start(wait=False)
    rc = second.wait_exit(10)
    err = second.stderr_text()
    assert rc == 1, "exit status %d, stderr:\n%s" % (rc, err)
    assert "already running" in err, err
    assert not os.path.lexists(second.socket)
    assert first.alive()
    assert_serves(first)


def test_second_instance_with_same_config_leaves_first_socket_alone(daemon):
    """Started twice by mistake (same socket too): the running one must keep its socket."""
    first = daemon()
    ino = os.lstat(first.socket).st_ino
    second = daemon(start=False)
    with open(first.config_path) as f:
        second.write_config(text=f.read())
    second.start(wait=False)
    rc = second.wait_exit(10)
    assert rc == 1, second.stderr_text()
    assert "already running" in second.stderr_text()
    assert os.lstat(first.socket).st_ino == ino, "the second instance replaced the socket"
    assert_serves(first)


# --------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_0_and_removes_socket(daemon, sig):
    d = daemon()
    d.version()
    d.close_channels()
    assert d.stop(sig) == 0
    assert not os.path.lexists(d.socket)


def test_sigterm_with_connected_client_exits_promptly(daemon):
    """kubelet keeps its connection open; an idle connection must not hold up shutdown."""
    d = daemon()
    d.version()  # the shared channel now holds an open, idle connection
    t0 = time.monotonic()
    assert d.stop(signal.SIGTERM) == 0
    elapsed = time.monotonic() - t0
    assert elapsed < 5, "shutdown took %.1fs with one idle client" % elapsed
    assert not os.path.lexists(d.socket)


def test_sighup_keeps_serving(daemon):
    d = daemon()
    for _ in range(3):
        d.send_signal(signal.SIGHUP)
        assert d.version().runtime_name == "tinycri"
    time.sleep(0.1)
    assert d.alive()
    assert_serves(d)


def test_sigpipe_from_vanished_client_does_not_kill(daemon, api):
    """Replies written to a client that already left must not raise SIGPIPE."""
    d = daemon()
    body = grpc_message(api.pb2.StatusRequest(verbose=True).SerializeToString())
    calls = b"".join(
        frame(HEADERS, END_HEADERS, sid, grpc_headers("/runtime.v1.RuntimeService/Status"))
        + frame(DATA, END_STREAM, sid, body) for sid in range(1, 40, 2))
    for _ in range(20):
        s = unix_connect(d.socket)
        s.sendall(PREFACE + frame(SETTINGS, 0, 0) + calls)
        s.close()
    assert_serves(d)
    assert d.alive(), d.stderr_text()
