# SPDX-License-Identifier: Apache-2.0
"""The files shipped for the glue with kubelet and crictl say what a running tinycrid
does: etc/crictl.yaml names the default socket and works with crictl (pointed at a test
daemon's socket), and etc/kubelet-config.yaml's endpoint and cgroupDriver are what
tinycrid's defaults serve and report through RuntimeConfig."""
import os
import re
import subprocess

import pytest

from conftest import REPO

CRICTL = os.path.join(os.path.dirname(REPO), "shared", "tools", "crictl")
DEFAULT_ENDPOINT = "unix:///run/tinycri/tinycri.sock"


def yaml_scalars(path):
    """Top-level "key: value" lines of a flat YAML file (no YAML library needed)."""
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^([A-Za-z][\w-]*):\s*(\S.*?)\s*$", line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def default_socket():
    with open(os.path.join(REPO, "etc", "tinycri.conf")) as f:
        return re.search(r"^socket = (\S+)$", f.read(), re.M).group(1)


def test_kubelet_snippet_matches_the_defaults(daemon, api):
    kc = yaml_scalars(os.path.join(REPO, "etc", "kubelet-config.yaml"))
    assert kc["kind"] == "KubeletConfiguration"
    assert kc["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert kc["containerRuntimeEndpoint"] == "unix://" + default_socket() == DEFAULT_ENDPOINT
    d = daemon()  # the shipped defaults but for paths
    resp = d.runtime.RuntimeConfig(api.pb2.RuntimeConfigRequest(), timeout=10)
    want = {api.pb2.CGROUPFS: "cgroupfs", api.pb2.SYSTEMD: "systemd"}[resp.linux.cgroup_driver]
    assert kc["cgroupDriver"] == want


@pytest.mark.skipif(not os.access(CRICTL, os.X_OK), reason="crictl not in ../shared/tools")
def test_crictl_yaml_works(daemon, tmp_path):
    src = os.path.join(REPO, "etc", "crictl.yaml")
    cfg = yaml_scalars(src)
    assert cfg["runtime-endpoint"] == cfg["image-endpoint"] == DEFAULT_ENDPOINT
    d = daemon()
    with open(src) as f:
        text = f.read().replace(DEFAULT_ENDPOINT, "unix://" + d.socket)
    conf = tmp_path / "crictl.yaml"
    conf.write_text(text)
    for argv in (["version"], ["images"], ["pods"]):
        r = subprocess.run([CRICTL, "--config", str(conf)] + argv, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, "crictl %s: %s" % (argv, r.stderr)
        assert "level=warning" not in r.stderr and "level=error" not in r.stderr, r.stderr
    assert "RuntimeName:  tinycri" in subprocess.run(
        [CRICTL, "--config", str(conf), "version"], capture_output=True, text=True,
        timeout=60).stdout
