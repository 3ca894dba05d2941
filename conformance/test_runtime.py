# SPDX-License-Identifier: Apache-2.0
"""RuntimeService as kubelet sees it: Version, Status, RuntimeConfig, UpdateRuntimeConfig,
and the methods that are not built yet."""
import functools
import json
import os
import re
import time

import grpc
import pytest

from conftest import REPO, RPC_TIMEOUT, load_api

BRIDGE_CONFLIST = {
    "cniVersion": "1.0.0",
    "name": "tinycri-test",
    "plugins": [
        {
            "type": "bridge",
            "bridge": "tc0",
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.88.0.0/16"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        },
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}


def conditions(resp):
    return {c.type: c for c in resp.status.conditions}


def network_ready(d):
    return conditions(d.status())["NetworkReady"]


# --------------------------------------------------------------------------
# Version
# --------------------------------------------------------------------------

def test_version(daemon):
    d = daemon()
    v = d.version()
    assert v.version == "0.1.0"
    assert v.runtime_name == "tinycri"
    assert v.runtime_version == "0.1.0"
    assert v.runtime_api_version == "v1"


def test_version_with_empty_request(daemon, api):
    d = daemon()
    v = d.runtime.Version(api.pb2.VersionRequest(), timeout=RPC_TIMEOUT)
    assert v.runtime_api_version == "v1"


# --------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------

def test_status_without_cni_config(daemon):
    d = daemon()
    conds = conditions(d.status())
    assert conds["RuntimeReady"].status is True
    net = conds["NetworkReady"]
    assert net.status is False
    assert net.reason == "NetworkPluginNotReady"
    assert d.cni_dir in net.message, "the message should say where no CNI config was found"


def test_status_with_bridge_conflist_present_at_start(daemon):
    d = daemon(start=False)
    d.write_cni("10-tinycri-test.conflist", BRIDGE_CONFLIST)
    d.start()
    net = network_ready(d)
    assert net.status is True, "NetworkReady: reason=%r message=%r" % (net.reason, net.message)
    assert conditions(d.status())["RuntimeReady"].status is True


def test_status_sees_conflist_written_after_start(daemon):
    """A CNI plugin's installer (flannel, calico...) drops its config once the node is up."""
    d = daemon()
    assert network_ready(d).status is False
    d.write_cni("10-tinycri-test.conflist", BRIDGE_CONFLIST)
    deadline = time.monotonic() + 5
    while not network_ready(d).status:
        assert time.monotonic() < deadline, "NetworkReady stayed false after the conflist appeared"
        time.sleep(0.05)


def test_status_single_plugin_conf_is_ready(daemon):
    d = daemon(start=False)
    d.write_cni("10-bridge.conf", {
        "cniVersion": "1.0.0", "name": "tinycri-test", "type": "bridge", "bridge": "tc0",
        "ipam": {"type": "host-local", "subnet": "10.88.0.0/16"},
    })
    d.start()
    net = network_ready(d)
    assert net.status is True, "NetworkReady: reason=%r message=%r" % (net.reason, net.message)


@pytest.mark.parametrize("name,content", [
    ("10-broken.conflist", '{"cniVersion": "1.0.0", "name": "tinycri-test", "plugins": ['),
    ("10-empty.conflist", ""),
    ("10-noname.conflist", json.dumps({"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]})),
    ("10-noplugins.conflist", json.dumps({"cniVersion": "1.0.0", "name": "tinycri-test"})),
    ("10-notype.conf", json.dumps({"cniVersion": "1.0.0", "name": "tinycri-test"})),
    ("README.txt", json.dumps(BRIDGE_CONFLIST)),
], ids=["broken-json", "empty", "no-name", "no-plugins", "no-type", "wrong-extension"])
def test_status_invalid_cni_config_alone_is_not_ready(daemon, name, content):
    d = daemon(start=False)
    d.write_cni(name, content)
    d.start()
    net = network_ready(d)
    assert net.status is False
    assert net.reason == "NetworkPluginNotReady"
    assert net.message
    assert d.alive()


def test_status_network_goes_unready_when_config_removed(daemon):
    d = daemon(start=False)
    path = d.write_cni("10-tinycri-test.conflist", BRIDGE_CONFLIST)
    d.start()
    assert network_ready(d).status is True
    os.unlink(path)
    deadline = time.monotonic() + 5
    while network_ready(d).status:
        assert time.monotonic() < deadline, "NetworkReady stayed true after the conflist went"
        time.sleep(0.05)


def test_status_verbose_has_config_json(daemon):
    d = daemon()
    resp = d.status(verbose=True)
    assert "config" in resp.info, "verbose Status info keys: %s" % sorted(resp.info)
    cfg = json.loads(resp.info["config"])
    assert isinstance(cfg, dict)
    text = json.dumps(cfg)
    assert json.dumps(d.socket) in text, "socket path missing from config JSON: %s" % text
    assert json.dumps(d.cni_dir) in text, "CNI conf dir missing from config JSON: %s" % text


def test_status_verbose_cni_load_status_and_cgroups(daemon):
    """containerd's lastCNILoadStatus (plain text, as crictl info shows it), and where the
    stats read each cgroup controller."""
    d = daemon()
    resp = d.status(verbose=True)
    cond = [c for c in resp.status.conditions if c.type == "NetworkReady"][0]
    assert resp.info["lastCNILoadStatus"] == cond.message != ""
    d.write_cni("10-tinycri-test.conflist", BRIDGE_CONFLIST)
    assert d.status(verbose=True).info["lastCNILoadStatus"] == "OK"
    cg = json.loads(resp.info["cgroups"])
    with open("/proc/self/mountinfo") as f:
        mounts = {line.split()[4]: line.split(" - ")[1].split()[0] for line in f}
    if mounts.get("/sys/fs/cgroup") == "cgroup2":
        assert cg["layout"] == "v2" and cg["unified"] == "/sys/fs/cgroup"
    elif mounts.get("/sys/fs/cgroup/unified") == "cgroup2":
        assert cg["layout"] == "hybrid" and cg["unified"] == "/sys/fs/cgroup/unified"
    else:
        assert cg["layout"] == "v1"
    if mounts.get("/sys/fs/cgroup/memory") == "cgroup":
        assert cg["v1"]["memory"] == "/sys/fs/cgroup/memory"


def test_status_not_verbose_has_no_config(daemon):
    d = daemon()
    assert "config" not in d.status(verbose=False).info


# --------------------------------------------------------------------------
# RuntimeConfig / UpdateRuntimeConfig
# --------------------------------------------------------------------------

def test_runtime_config_cgroupfs_by_default(daemon, api):
    d = daemon()
    resp = d.runtime.RuntimeConfig(api.pb2.RuntimeConfigRequest(), timeout=RPC_TIMEOUT)
    assert resp.linux.cgroup_driver == api.pb2.CGROUPFS


def test_runtime_config_systemd_when_configured(daemon, api):
    d = daemon(config={"runtime": {"cgroup_driver": "systemd"}})
    resp = d.runtime.RuntimeConfig(api.pb2.RuntimeConfigRequest(), timeout=RPC_TIMEOUT)
    assert resp.linux.cgroup_driver == api.pb2.SYSTEMD


def test_update_runtime_config_pod_cidr(daemon, api):
    d = daemon()
    req = api.pb2.UpdateRuntimeConfigRequest(
        runtime_config=api.pb2.RuntimeConfig(
            network_config=api.pb2.NetworkConfig(pod_cidr="10.88.0.0/16")))
    d.runtime.UpdateRuntimeConfig(req, timeout=RPC_TIMEOUT)
    info = d.status(verbose=True).info
    assert any("10.88.0.0/16" in v for v in info.values()), \
        "pod CIDR not visible in verbose Status info: %s" % dict(info)
    assert d.version().runtime_name == "tinycri"


def test_update_runtime_config_empty(daemon, api):
    """kubelet sends an empty pod CIDR when the node has none yet."""
    d = daemon()
    d.runtime.UpdateRuntimeConfig(api.pb2.UpdateRuntimeConfigRequest(), timeout=RPC_TIMEOUT)
    assert d.version().runtime_name == "tinycri"


# --------------------------------------------------------------------------
# Methods not built yet, and methods that do not exist
# --------------------------------------------------------------------------

# The foundation's methods: always built.
FOUNDATION = {"Version", "Status", "RuntimeConfig", "UpdateRuntimeConfig"}


@functools.lru_cache(maxsize=None)
def built_methods():
    """{service: {method}} from the handler tables in src/cri/methods.c, the one list of
    what is built (features land in parallel; each adds its methods there)."""
    with open(os.path.join(REPO, "src", "cri", "methods.c")) as f:
        text = f.read()
    services = {"runtime": "RuntimeService", "image": "ImageService"}
    built = {}
    for prefix, body in re.findall(r"rpc_handler\s+(\w+)_handlers\[\]\s*=\s*\{(.*?)\};",
                                   text, re.S):
        built[services[prefix]] = set(re.findall(r'\{\s*"(\w+)"\s*,', body))
    return built


def unbuilt_methods():
    api = load_api()
    built = built_methods()
    return [(s.name, m.name) for s, m in api.methods() if m.name not in built.get(s.name, ())]


@pytest.mark.parametrize("service,method", unbuilt_methods(),
                         ids=["%s.%s" % sm for sm in unbuilt_methods()])
def test_unbuilt_method_is_unimplemented(daemon, api, service, method):
    d = daemon()
    s = api.pb2.DESCRIPTOR.services_by_name[service]
    m = s.methods_by_name[method]
    req_cls = api.message(m.input_type.name)
    resp_cls = api.message(m.output_type.name)
    ch = d.channel()
    path = api.path(s, m)
    with pytest.raises(grpc.RpcError) as ei:
        if m.server_streaming:
            call = ch.unary_stream(path, request_serializer=req_cls.SerializeToString,
                                   response_deserializer=resp_cls.FromString)
            list(call(req_cls(), timeout=RPC_TIMEOUT))
        else:
            call = ch.unary_unary(path, request_serializer=req_cls.SerializeToString,
                                  response_deserializer=resp_cls.FromString)
            call(req_cls(), timeout=RPC_TIMEOUT)
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED, ei.value.details()
    assert "not implemented yet: %s" % method in (ei.value.details() or "")


def test_built_method_list_matches_schema(api):
    """The table parse above found the foundation methods and only names the schema has."""
    names = {(s.name, m.name) for s, m in api.methods()}
    assert {s.name for s in api.services()} == {"RuntimeService", "ImageService"}
    built = {(s, m) for s, ms in built_methods().items() for m in ms}
    assert {("RuntimeService", m) for m in FOUNDATION} <= built, built
    assert built <= names, "methods.c names methods the schema does not have"
    assert set(unbuilt_methods()) | built == names
    assert unbuilt_methods(), "every method is built: drop test_unbuilt_method_is_unimplemented"


@pytest.mark.parametrize("path", [
    "/runtime.v1.RuntimeService/NoSuchMethod",
    "/runtime.v1.NoSuchService/Version",
    "/runtime.v1alpha2.RuntimeService/Version",
    "/runtime.v1.RuntimeService/version",
])
def test_unknown_method_is_unimplemented(daemon, path):
    d = daemon()
    ch = d.channel()
    call = ch.unary_unary(path, request_serializer=lambda x: x, response_deserializer=lambda x: x)
    with pytest.raises(grpc.RpcError) as ei:
        call(b"", timeout=RPC_TIMEOUT)
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED, ei.value.details()
    # The connection is still good for real calls.
    assert d.version(d.api.grpc.RuntimeServiceStub(ch)).runtime_name == "tinycri"
