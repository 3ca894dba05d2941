#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Write the seed inputs of the fuzz targets into tests/fuzz/corpus/<target>/.

The seeds come from the test data of the tree: the images, layers and archives
conformance/imagebuild.py builds (malicious layers included), the CRI requests the
conformance suite sends (built with the protobuf classes conftest.py generates from
proto/api.proto), the raw HTTP/2 of conformance/h2raw.py, etc/tinycri.conf, and the
documents of the unit tests. The output is deterministic; run it again after
changing a fuzz target's input format, then `scripts/fuzz --merge` to fold what
fuzzing found into the committed corpus. Seeds are named seed-<what>; inputs that
once found a bug live in tests/fuzz/regress/<target>/ instead.

Usage: tests/fuzz/seeds.py [--out DIR]   (default: tests/fuzz/corpus)
Needs python3-grpc-tools, python3-protobuf and zstd (scripts/lib.sh installs them).
"""
import argparse
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "conformance"))

import h2raw  # noqa: E402
import imagebuild as ib  # noqa: E402

SEP = b"\n--\n"  # fuzz_split() in tests/fuzz/fuzz_util.c
D = "sha256:" + "ab" * 32


class Corpus:
    def __init__(self, root):
        self.root = root

    def add(self, target, name, data):
        if isinstance(data, str):
            data = data.encode()
        d = os.path.join(self.root, target)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)


def load_api():
    from conftest import load_api as load  # noqa: E402 (generates api_pb2 with grpc_tools)
    return load()


# --- CRI requests, as the conformance suite sends them -----------------------

def requests(pb):
    """[(method, message)] in the shape of the conformance suite's calls."""
    pod = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="pod", uid="uid-pod", namespace="default", attempt=1),
        hostname="pod", log_directory="/var/log/pods/default_pod_uid-pod",
        dns_config=pb.DNSConfig(servers=["10.90.0.10"], searches=["svc.test"],
                                options=["ndots:3"]),
        port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=80, host_port=8080)],
        labels={"app": "web"}, annotations={"kubernetes.io/ingress-bandwidth": "10M"},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent="/kubepods/besteffort/poduid-pod",
            sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER,
                                                     ipc=pb.POD))))
    ctr = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="c", attempt=0),
        image=pb.ImageSpec(image="docker.io/library/busybox:latest"),
        command=["sh", "-c"], args=["echo hi; sleep 3600"], working_dir="/",
        envs=[pb.KeyValue(key="A", value=b"1"), pb.KeyValue(key="PATH", value=b"/bin")],
        mounts=[pb.Mount(container_path="/data", host_path="/tmp/tc-data", readonly=True),
                pb.Mount(container_path="/etc/hosts", host_path="/var/lib/pod/hosts")],
        devices=[pb.Device(container_path="/dev/fuse", host_path="/dev/fuse",
                           permissions="rwm")],
        labels={"io.kubernetes.container.name": "c"}, annotations={"a": "b"},
        log_path="c/0.log", stdin=False, tty=False,
        linux=pb.LinuxContainerConfig(
            resources=pb.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=64 << 20,
                                                 oom_score_adj=500),
            security_context=pb.LinuxContainerSecurityContext(
                capabilities=pb.Capability(add_capabilities=["NET_ADMIN"],
                                           drop_capabilities=["ALL"]),
                run_as_user=pb.Int64Value(value=1000), readonly_rootfs=True,
                no_new_privs=True, masked_paths=["/proc/kcore"], readonly_paths=["/proc/sys"],
                seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault),
                apparmor=pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost,
                                            localhost_ref="k8s-default"),
                namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER,
                                                     ipc=pb.POD))))
    cid = "c" * 64
    sid = "5" * 64
    return [
        ("Version", pb.VersionRequest(version="v1")),
        ("Status", pb.StatusRequest(verbose=True)),
        ("RunPodSandbox", pb.RunPodSandboxRequest(config=pod, runtime_handler="runc")),
        ("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=sid)),
        ("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True)),
        ("ListPodSandbox", pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(
            id=sid, label_selector={"app": "web"}))),
        ("CreateContainer", pb.CreateContainerRequest(pod_sandbox_id=sid, config=ctr,
                                                      sandbox_config=pod)),
        ("StartContainer", pb.StartContainerRequest(container_id=cid)),
        ("StopContainer", pb.StopContainerRequest(container_id=cid, timeout=10)),
        ("ContainerStatus", pb.ContainerStatusRequest(container_id=cid, verbose=True)),
        ("ListContainers", pb.ListContainersRequest(filter=pb.ContainerFilter(
            state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)))),
        ("ExecSync", pb.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", "echo ok"],
                                        timeout=5)),
        ("ReopenContainerLog", pb.ReopenContainerLogRequest(container_id=cid)),
        ("UpdateRuntimeConfig", pb.UpdateRuntimeConfigRequest(runtime_config=pb.RuntimeConfig(
            network_config=pb.NetworkConfig(pod_cidr="10.88.0.0/16")))),
        ("PullImage", pb.PullImageRequest(
            image=pb.ImageSpec(image="localhost:5000/busybox:1.36"),
            auth=pb.AuthConfig(username="user", password="pass", registry_token="tok"))),
        ("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image="busybox"),
                                              verbose=True)),
        ("ListImages", pb.ListImagesRequest(filter=pb.ImageFilter(
            image=pb.ImageSpec(image="busybox")))),
        ("RemoveImage", pb.RemoveImageRequest(image=pb.ImageSpec(image="busybox@" + D))),
        ("ImageFsInfo", pb.ImageFsInfoRequest()),
    ]


def method_paths(pb):
    """Every method path in descriptor order, as fuzz_request.c numbers them."""
    out = []
    for svc in ("RuntimeService", "ImageService"):
        desc = pb.DESCRIPTOR.services_by_name[svc]
        out += ["/%s/%s" % (desc.full_name, m.name) for m in desc.methods]
    return out


def request_seeds(c, pb):
    paths = method_paths(pb)
    for method, msg in requests(pb):
        path = next(p for p in paths if p.endswith("/" + method))
        c.add("request", method, bytes([paths.index(path)]) + msg.SerializeToString())
    # A method that is not built, and a path that is not in the table.
    c.add("request", "unimplemented", bytes([paths.index(
        "/runtime.v1.RuntimeService/CheckpointContainer")]))
    c.add("request", "unknown-path", bytes([len(paths)]))


def h2_seeds(c, pb):
    F, H = h2raw.frame, h2raw
    settings = F(H.SETTINGS, 0, 0, H.settings((H.SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)))
    ack = F(H.SETTINGS, H.ACK, 0)
    paths = method_paths(pb)
    reqs = dict(requests(pb))

    def call(stream, method, msg=None, extra=(), end=True):
        path = next(p for p in paths if p.endswith("/" + method))
        body = msg.SerializeToString() if msg is not None else reqs[method].SerializeToString()
        return (F(H.HEADERS, H.END_HEADERS, stream, H.grpc_headers(path, extra))
                + F(H.DATA, H.END_STREAM if end else 0, stream, H.grpc_message(body)))

    c.add("h2", "version", settings + ack + call(1, "Version"))
    for method in ("RunPodSandbox", "CreateContainer", "PullImage", "ListContainers",
                   "ExecSync", "ImageStatus"):
        c.add("h2", method, settings + call(1, method))
    # Several streams, a deadline, a ping, a window update, a reset and a goaway.
    c.add("h2", "streams", settings + call(1, "Version", extra=[("grpc-timeout", "5S")])
          + call(3, "ListImages") + F(H.PING, 0, 0, b"12345678")
          + F(H.WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 16))
          + call(5, "Status", end=False) + F(H.RST_STREAM, 0, 5, struct.pack(">I", 8))
          + F(H.GOAWAY, 0, 0, struct.pack(">II", 5, 0)))
    # A message split over DATA frames, and one with the compressed flag.
    body = reqs["CreateContainer"].SerializeToString()
    framed = H.grpc_message(body)
    path = next(p for p in paths if p.endswith("/CreateContainer"))
    c.add("h2", "split-data", settings + F(H.HEADERS, H.END_HEADERS, 1, H.grpc_headers(path))
          + F(H.DATA, 0, 1, framed[:7]) + F(H.DATA, 0, 1, framed[7:100])
          + F(H.DATA, H.END_STREAM, 1, framed[100:]))
    c.add("h2", "compressed", settings + F(H.HEADERS, H.END_HEADERS, 1, H.grpc_headers(
        path, [("grpc-encoding", "gzip")])) + F(H.DATA, H.END_STREAM, 1, b"\x01" + framed[1:]))
    # Headers in a CONTINUATION, a trailers-only end, an unknown method, a bad request.
    block = H.grpc_headers(next(p for p in paths if p.endswith("/Version")))
    c.add("h2", "continuation", settings + F(H.HEADERS, 0, 1, block[:10])
          + F(H.CONTINUATION, H.END_HEADERS, 1, block[10:])
          + F(H.DATA, H.END_STREAM, 1, H.grpc_message(b"\x0a\x02v1")))
    c.add("h2", "unknown-method", settings + F(H.HEADERS, H.END_HEADERS | H.END_STREAM, 1,
                                               H.grpc_headers("/runtime.v1.RuntimeService/Nope")))
    c.add("h2", "malformed", settings + F(H.HEADERS, H.END_HEADERS | H.END_STREAM, 1,
                                          H.header_block([(":method", "GET"), (":path", "x")])))


# --- images, manifests, layers (conformance/imagebuild.py) -------------------

def manifest_seeds(c):
    # fuzz_manifest.c: the first byte picks the Content-Type (0 none, 1 OCI index,
    # 2 OCI manifest, 3 Docker list, 4 Docker manifest, ...).
    tiny = ib.TarBuilder().dir("etc").file("etc/tinycri-image", "fuzz\n")
    oci = ib.Image([ib.Layer(tiny)])
    docker = ib.Image([ib.Layer(tiny)], docker=True)
    zstd = ib.Image([ib.Layer(tiny, "zstd"), ib.Layer(tiny, None)])
    idx = ib.Index([ib.fake_platform_image(a, v) for a, v in ib.FAKE_PLATFORMS])
    didx = ib.Index([ib.fake_platform_image(a, v, docker=True) for a, v in ib.FAKE_PLATFORMS],
                    docker=True)
    c.add("manifest", "oci-manifest", b"\x00" + oci.manifest.data)
    c.add("manifest", "oci-manifest-ct", b"\x02" + oci.manifest.data)
    c.add("manifest", "docker-manifest", b"\x04" + docker.manifest.data)
    c.add("manifest", "zstd-plain-layers", b"\x00" + zstd.manifest.data)
    c.add("manifest", "oci-index", b"\x01" + idx.manifest.data)
    c.add("manifest", "docker-list", b"\x03" + didx.manifest.data)
    c.add("manifest", "oci-config", b"\x00" + oci.config.data)
    c.add("manifest", "user-config", b"\x00" + ib.Image(
        [ib.Layer(tiny)], User="1000:1000", Entrypoint=["/bin/sh"], Volumes={"/v": {}}).config.data)
    c.add("manifest", "schema1", b"\x05" + json.dumps(
        {"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}).encode())
    c.add("manifest", "no-media-type", b"\x06" + json.dumps(
        {"schemaVersion": 2, "manifests": [{"digest": D, "size": 1}]}).encode())


def layer_seeds(c):
    T = ib.TarBuilder
    tars = {
        "files": T().dir("etc").file("etc/hostname", "x\n").file("etc/passwd", "root:x:0:0::/:/bin/sh\n")
        .symlink("etc/link", "hostname").hardlink("etc/hard", "etc/hostname")
        .file("bin/suid", "#!/bin/sh\n", mode=0o4755, uid=1000, gid=1000),
        "whiteouts": T().dir("data").whiteout("data/a.txt").dir("opq").opaque("opq")
        .file("opq/new", "new\n").file("data/.wh..wh.plnk", "").chardev("dev0", 1, 3),
        "xattrs": T().file("x", "x", xattrs={"user.a": "1", "trusted.overlay.opaque": "y",
                                             "security.capability": "\x01\x00\x00\x02"}),
    }
    for name, (image, _paths) in ib.malicious_cases("fuzz").items():
        tars["malicious-" + name] = image.layers[0].tar
    tars = {name: t.bytes() if isinstance(t, ib.TarBuilder) else t for name, t in tars.items()}
    for name, tar in tars.items():
        c.add("unpack", name + ".tar", tar)
    c.add("unpack", "whiteouts.tar.gz", ib.gzip_bytes(tars["whiteouts"]))
    c.add("unpack", "symlink-rel.tar.zst", ib.zstd_bytes(tars["malicious-symlink-rel"]))


# --- registry auth -----------------------------------------------------------

def auth_seeds(c):
    # fuzz_auth.c: 0 WWW-Authenticate values, 1 token answer, 2 error body.
    c.add("auth", "bearer", b"\x00" + b'Bearer realm="https://auth.example/token",'
          b'service="registry.example",scope="repository:library/busybox:pull"')
    c.add("auth", "basic-and-bearer", b"\x00" + b'Basic realm="x", Bearer realm=https://a/t'
          + SEP + b'Bearer realm="https://b/t",service=svc' + SEP + b'Negotiate abc==')
    c.add("auth", "escaped", b"\x00" + b'Bearer realm="https://a/t\\"x",service="s\\\\"')
    c.add("auth", "token", b"\x01" + json.dumps({"token": "tok-1", "expires_in": 300}).encode())
    c.add("auth", "access-token", b"\x01" + json.dumps(
        {"access_token": "abc.def.ghi", "expires_in": 3600, "issued_at": "2023-01-01T00:00:00Z"})
        .encode())
    c.add("auth", "error-denied", b"\x02" + json.dumps({"errors": [
        {"code": "DENIED", "message": "requested access to the resource is denied"}]}).encode())
    c.add("auth", "error-unknown", b"\x02" + json.dumps({"errors": [
        {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {"Tag": "x"}}]})
        .encode())


# --- configuration, CNI, users, keeper, logs ---------------------------------

def config_seeds(c):
    with open(os.path.join(REPO, "etc", "tinycri.conf"), "rb") as f:
        c.add("config", "tinycri.conf", f.read())
    c.add("config", "registries", """[server]
socket = /run/tc.sock
log_level = debug
max_connections = 16

[runtime]
default_runtime = runc
cgroup_driver = systemd

[runtime.kata]
path = /usr/bin/kata-runtime

[registry.docker.io]
mirrors = https://mirror.example, http://10.0.0.1:5000/base
username = user
password = "p a s s"

[registry.localhost:5000]
insecure = true
ca_file = /etc/ssl/ca.pem

[image]
pinned_images = busybox, registry.k8s.io/pause:3.9
""")


def cni_seeds(c):
    # fuzz_cni_conflist.c: the first byte names the file (0 .conflist, 1 .conf, 2 .json).
    conflist = {"cniVersion": "1.0.0", "name": "tcnet", "plugins": [
        {"type": "bridge", "bridge": "tc0", "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}}]}
    c.add("cni_conflist", "conflist", b"\x00" + json.dumps(conflist, indent=1).encode())
    c.add("cni_conflist", "conf", b"\x01" + json.dumps(
        {"cniVersion": "0.4.0", "name": "one", "type": "bridge"}).encode())
    c.add("cni_conflist", "bad-type", b"\x02" + json.dumps(
        {"name": "x", "plugins": [{"type": "../../bin/sh"}]}).encode())
    # fuzz_cni_result.c: even first byte: a result (bits 1-2 pick the ifname); odd: a quantity.
    result = {"cniVersion": "1.0.0", "interfaces": [
        {"name": "tc0"}, {"name": "eth0", "sandbox": "/var/run/netns/x", "mac": "0a:58:0a:58:00:02"}],
        "ips": [{"address": "10.88.0.2/16", "gateway": "10.88.0.1", "interface": 1},
                {"address": "fd00::2/64", "interface": 1}, {"address": "10.1.1.1/8"},
                {"address": "192.0.2.1/24", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.90.0.10"]}}
    c.add("cni_result", "result", b"\x02" + json.dumps(result).encode())
    c.add("cni_result", "result-0.4", b"\x00" + json.dumps(
        {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.5/24"}]}).encode())
    for i, q in enumerate(("10M", "1.5Gi", "500k", "1P", "0.001E", "12345678901234567890")):
        c.add("cni_result", "quantity-%d" % i, b"\x01" + q.encode())


def passwd_seeds(c):
    # fuzz_passwd.c: flags, then user, passwd, group[, link target].
    passwd = (b"root:x:0:0:root:/root:/bin/sh\n# comment\nbin:x:1:1::/bin:/sbin/nologin\n"
              b"app:x:1000:1000:App:/home/app:/bin/sh\r\nnobody:x:65534:65534::/:/bin/false\n")
    group = b"root:x:0:\nwheel:x:10:app,root\napp:x:1000:\nstaff:x:50:app\n"
    users = ((1, b"app"), (0, b"1000:50"), (1, b"app:wheel"), (0, b"65534"), (1, b""),
             (0, b"nosuch"), (1, b"app:nosuch"))
    for i, (flags, user) in enumerate(users):
        c.add("passwd", "user-%d" % i, bytes([flags]) + user + SEP + passwd + SEP + group)
    c.add("passwd", "symlink-escape", b"\x05app" + SEP + passwd + SEP + group + SEP
          + b"../../outside/etc/passwd")
    c.add("passwd", "symlink-abs-portable", b"\x07root" + SEP + passwd + SEP + group + SEP
          + b"/etc/../../etc/passwd")


def keeper_seeds(c):
    # fuzz_keeper_ctl.c: the first byte sets the chunk size.
    c.add("keeper_ctl", "commands", b"\x07reopen\nresize 80 24\r\nstdin-close\nresize 0 1\nbogus\n")
    c.add("keeper_ctl", "too-long", b"\x40" + b"r" * 200 + b"\n")


def ctr_log_seeds(c):
    # fuzz_ctr_log.c: flags (1: tty), then ops (0/1 feed, 2/3 flush, 4/5 run, 6 rotate, 7 rest).
    c.add("ctr_log", "lines", b"\x00" + b"\x00\x06hello\n" + b"\x01\x04err!" + b"\x03"
          + b"\x06" + b"\x00\x03end" + b"\x07tail\nwithout newline")
    c.add("ctr_log", "tty", b"\x01" + b"\x00\x05a\r\nb\r" + b"\x00\x01\n" + b"\x07x\r\r\n")
    c.add("ctr_log", "long-line", b"\x00" + b"\x04\x7fx" + b"\x04\x00\r" + b"\x00\x01\n")
    c.add("ctr_log", "tty-long", b"\x01" + b"\x04\x7fy" + b"\x00\x01\r" + b"\x06" + b"\x00\x01\n")


def ref_seeds(c):
    refs = ["busybox", "busybox:1.36", "me/app", "docker.io/busybox",
            "index.docker.io/library/busybox:x", "localhost/app", "localhost:5000/a/b/c:v1",
            "127.0.0.1:5000/busybox@" + D, "quay.io/org/app:1.0@" + D, "[::1]:5000/app:tag",
            "Registry.Example/app", "a/b__c.d-e--f:T_1.x-y", "registry.k8s.io/pause:3.9",
            "busybox:", "UPPER/app", "a//b", "busybox@sha512:" + "0" * 128]
    for i, r in enumerate(refs):
        c.add("ref", "%02d" % i, r)


def log_seeds(c):
    # fuzz_log.c: the strings of one log call, "\n--\n" between them.
    c.add("log", "forged", b"x\nlevel=error msg=FORGED" + SEP + b'say "hi" \\ x=1' + SEP + b"abcdef"
          + SEP + b"free text")
    c.add("log", "plain", b"web-1" + SEP + b"ok" + SEP + b"abc" + SEP + b"word")
    c.add("log", "controls", b"\t\r\x01\x7f\xc3\xa9" + SEP + b"" + SEP + b"=" + SEP + b"a=b")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "corpus"))
    args = ap.parse_args()
    targets = ("h2", "request", "log", "ref", "manifest", "auth", "config", "cni_result",
               "cni_conflist", "passwd", "keeper_ctl", "ctr_log", "unpack")
    for t in targets:
        d = os.path.join(args.out, t)
        if os.path.isdir(d):
            for name in os.listdir(d):
                if name.startswith("seed-"):
                    os.unlink(os.path.join(d, name))
    c = Corpus(args.out)
    pb = load_api().pb2
    request_seeds(c, pb)
    h2_seeds(c, pb)
    manifest_seeds(c)
    layer_seeds(c)
    auth_seeds(c)
    config_seeds(c)
    cni_seeds(c)
    passwd_seeds(c)
    keeper_seeds(c)
    ctr_log_seeds(c)
    ref_seeds(c)
    log_seeds(c)
    for t in targets:
        n = len(os.listdir(os.path.join(args.out, t)))
        print("%-13s %3d inputs" % (t, n))


if __name__ == "__main__":
    main()
