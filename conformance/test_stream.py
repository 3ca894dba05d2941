# SPDX-License-Identifier: Apache-2.0
"""The streaming server: Exec, Attach and PortForward URLs served by tinycrid over
SPDY/3.1 and WebSocket, driven by crictl (client-go's SPDY client, as kubelet and
kubectl use it), by a raw SPDY client (spdyclient.py) for the edges, and by
python3-websocket.

Containers come from the `ctrs` fixture of test_containers.py (pods on the
tc-ctr0 bridge, the busybox image from the local registry, runc by default).
"""
import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import time

import grpc
import pytest

from conftest import wait_until
from test_containers import Ctrs, ctrs, pod_network, rss_anon_kib, is_sanitized, SLEEP  # noqa: F401
import spdyclient

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

CRICTL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "tools",
                      "crictl")
MiB = 1 << 20


def crictl_path():
    for p in (os.environ.get("CRICTL"), CRICTL, "/work/shared/tools/crictl"):
        if p and os.path.isfile(p) and os.access(p, os.X_OK):
            return os.path.abspath(p)
    pytest.skip("crictl not found (set CRICTL)")


def crictl(ctrs, *args, input=None, timeout=60, check=False):
    sock = "unix://" + ctrs.d.socket
    argv = [crictl_path(), "--runtime-endpoint", sock, "--image-endpoint", sock,
            "--timeout", "30s"] + list(args)
    return subprocess.run(argv, input=input, capture_output=True, timeout=timeout, check=check)


def running(ctrs, name="s", **kw):
    pod = ctrs.run_pod(name)
    kw.setdefault("command", SLEEP)
    return pod, ctrs.run(pod, "c", **kw)


# --------------------------------------------------------------------------
# crictl exec
# --------------------------------------------------------------------------

def test_crictl_exec_streams_and_exit_code(ctrs):
    _, cid = running(ctrs, "ex")
    r = crictl(ctrs, "exec", cid, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.stdout == b"out\n"
    # stderr separately; then crictl's own line: client-go decoded the exit code from the
    # v4 status (crictl 1.26 itself exits 1 for any failure).
    assert r.stderr.startswith(b"err\n")
    assert b"command terminated with exit code 3" in r.stderr
    assert r.returncode == 1
    r = crictl(ctrs, "exec", cid, "echo", "hello")
    assert (r.returncode, r.stdout) == (0, b"hello\n")
