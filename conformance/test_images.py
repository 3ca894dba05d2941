# SPDX-License-Identifier: Apache-2.0
"""ImageService as kubelet and crictl see it: pulls from real registries (plain,
TLS, Basic and token auth, mirrors, a proxy that cuts, holds or rewrites
responses), ImageStatus, ListImages, RemoveImage, ImageFsInfo, the import
directory, and what is left on disk.

Required Debian packages (beyond the suite's python3-grpcio & co):
  docker-registry        the registry (/usr/bin/docker-registry, distribution 2.8)
  busybox-static         /bin/busybox, the binary inside every test image
  zstd                   the zstd CLI, for zstd-compressed layers
  python3-cryptography   test CA, TLS and token-signing certificates
  python3-jwt            RS256 tokens of the token server
  python3-bcrypt         the htpasswd file of the Basic-auth registry

Images are built in Python (imagebuild.py) and pushed once per session
(conftest_images.py); registries, the token server and the proxy are in
registries.py. The first tests (test_infra_*) check that machinery on its own,
without a daemon.

Daemon configuration the tests write (see etc/tinycri.conf once documented):
  [registry.<host:port>]  insecure, mirrors (comma-separated URLs), ca_file,
                          username, password
  [image]                 import_dir, max_concurrent_downloads,
                          drop_compressed_layers, pinned_images
Layers are looked for as <root>/layers/<chain-id hex>[/fs].
"""
import base64
import concurrent.futures
import gzip
import http.client
import json
import os
import re
import signal
import ssl
import stat
import time
import urllib.error
import urllib.request

import grpc
import pytest

import imagebuild as ib
from conftest import RPC_TIMEOUT, load_api, wait_until
from conftest_images import check_image_deps

PULL_TIMEOUT = 90.0  # one PullImage (retries with backoff against broken mirrors included)
AUTH_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def pb():
    return load_api().pb2


def spec(ref):
    return pb().ImageSpec(image=ref)


def pull(d, ref, auth=None, timeout=PULL_TIMEOUT):
    req = pb().PullImageRequest(image=spec(ref))
    if auth is not None:
        req.auth.CopyFrom(auth)
    return d.image.PullImage(req, timeout=timeout).image_ref


def pull_future(d, ref, auth=None, timeout=PULL_TIMEOUT, stub=None):
    req = pb().PullImageRequest(image=spec(ref))
    if auth is not None:
        req.auth.CopyFrom(auth)
    return (stub or d.image).PullImage.future(req, timeout=timeout)


def pull_fails(d, ref, auth=None, timeout=PULL_TIMEOUT):
    """PullImage must fail; returns the grpc.RpcError."""
    with pytest.raises(grpc.RpcError) as ei:
        got = pull(d, ref, auth, timeout)
        pytest.fail("PullImage(%s) succeeded (image_ref %s); it must fail" % (ref, got))
    return ei.value


def auth_config(**kw):
    return pb().AuthConfig(**kw)


def image_status(d, ref, verbose=False):
    return d.image.ImageStatus(pb().ImageStatusRequest(image=spec(ref), verbose=verbose),
                               timeout=RPC_TIMEOUT)


def status_image(d, ref):
    """The Image of ImageStatus(ref), or None when the response has none."""
    r = image_status(d, ref)
    return r.image if r.HasField("image") else None


def list_images(d, ref=None):
    req = pb().ListImagesRequest()
    if ref is not None:
        req.filter.image.image = ref
    return list(d.image.ListImages(req, timeout=RPC_TIMEOUT).images)


def listed_ids(d):
    return {i.id for i in list_images(d)}


def remove_image(d, ref):
    d.image.RemoveImage(pb().RemoveImageRequest(image=spec(ref)), timeout=RPC_TIMEOUT)


def registry_section(*hosts, **keys):
    """{"registry.<host>": {"insecure": "true", **keys}} for each host."""
    out = {}
    for h in hosts:
        sec = {"insecure": "true"}
        sec.update({k: str(v) for k, v in keys.items()})
        out["registry." + h] = sec
    return out


def merge(*dicts):
    out = {}
    for d in dicts:
        for sec, keys in d.items():
            out.setdefault(sec, {}).update(keys)
    return out


def repo_of(ref):
    """"127.0.0.1:5000/busybox:latest" -> "127.0.0.1:5000/busybox"."""
    if "@" in ref:
        return ref.split("@", 1)[0]
    host, _, rest = ref.partition("/")
    return host + "/" + rest.split(":", 1)[0]


def du(path):
    """Bytes allocated under path (each inode once)."""
    seen, total = set(), 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def tree(path, depth=3):
    """A short listing of path for failure messages."""
    out = []
    base = path.rstrip("/").count("/")
    for dirpath, dirnames, filenames in os.walk(path):
        level = dirpath.count("/") - base
        if level >= depth:
            dirnames[:] = []
        out.append("  " * level + os.path.basename(dirpath) + "/")
        for f in filenames[:20]:
            out.append("  " * (level + 1) + f)
        if len(out) > 200:
            out.append("...")
            break
    return "\n".join(out)


def layer_dir_candidates(root, chain_id):
    h = chain_id.split(":", 1)[1]
    for base in (os.path.join(root, "layers", h), os.path.join(root, "layers", "sha256", h)):
        for sub in ("fs", "diff", "rootfs", ""):
            yield os.path.join(base, sub) if sub else base


def find_layer_dir(root, chain_id, probe):
    """The unpacked directory of the layer with this ChainID: the one of
    <root>/layers/<hex>[/fs] (or, failing those, any directory named <hex> under
    root, with or without an fs/ level) in which probe (a relative path) exists."""
    for c in layer_dir_candidates(root, chain_id):
        if os.path.lexists(os.path.join(c, probe)):
            return c
    h = chain_id.split(":", 1)[1]
    for dirpath, dirnames, _ in os.walk(root):
        if os.path.basename(dirpath) == h:
            for sub in ("fs", "diff", "rootfs", ""):
                c = os.path.join(dirpath, sub) if sub else dirpath
                if os.path.lexists(os.path.join(c, probe)):
                    return c
    pytest.fail("no unpacked layer %s holding %s under %s:\n%s"
                % (chain_id, probe, root, tree(root)))


def leftover_layer_dirs(root, chain_ids):
    """Paths under root whose name carries one of these ChainIDs (a layer dir or a
    temporary one)."""
    hexes = [c.split(":", 1)[1] for c in chain_ids]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            if any(h in name for h in hexes):
                found.append(os.path.join(dirpath, name))
    return found


def find_named(top, names):
    """Paths under top whose basename is in names, or that end in one of them when a
    name has a "/" ("bin/busybox"); symlinks are not followed."""
    hits = []
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if n in names or any("/" in x and p.endswith("/" + x) for x in names):
                hits.append(p)
    return hits


def info_json(resp):
    """Every value of a verbose ImageStatus info map, parsed (all must be JSON)."""
    out = {}
    for k, v in resp.info.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            pytest.fail("ImageStatus info[%r] is not JSON: %r" % (k, v[:200]))
    return out


def walk_json(obj):
    """Every dict and string inside a JSON value."""
    stack = [obj]
    while stack:
        o = stack.pop()
        yield o
        if isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)


# Loopback only: never through an http_proxy from the environment.
urlopen = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


# --------------------------------------------------------------------------
# The machinery itself (no daemon)
# --------------------------------------------------------------------------

def test_infra_images_are_deterministic():
    check_image_deps()
    assert ib.busybox_tar() == ib.busybox_tar()
    a, b = ib.Layer(ib.busybox_tar()), ib.Layer(ib.busybox_tar())
    assert a.blob.digest == b.blob.digest and a.diff_id == b.diff_id
    assert ib.zstd_bytes(b"x" * 1000) == ib.zstd_bytes(b"x" * 1000)
    img = ib.busybox_image()
    assert img.config_json["rootfs"]["diff_ids"] == [ib.busybox_layer().diff_id]
    assert img.config_json["architecture"] == ib.goarch()[0]
    idx = ib.multiarch_index()
    assert idx.manifest_json["manifests"][0]["platform"]["architecture"] != ib.goarch()[0], \
        "the native entry must not be first"
    assert idx.native().id == ib.busybox_image(Labels={"tinycri.test": "multiarch"}).id


def test_infra_whiteout_and_malicious_tars_are_as_built():
    import tarfile
    import io
    w = ib.whiteout_image()
    top = tarfile.open(fileobj=io.BytesIO(w.layers[2].tar))
    assert set(top.getnames()) >= {"data/.wh.a.txt", "opq/.wh..wh..opq", "opq/new"}
    names = {}
    for case, (img, _) in ib.malicious_cases("x").items():
        names[case] = [(m.name, m.linkname) for m in
                       tarfile.open(fileobj=io.BytesIO(img.layers[0].tar))]
    assert ("../evil-x", "") in names["dotdot"]
    assert ("/tmp/tc-evil-x-abs", "") in names["abs"]
    assert ("a/../../evil-nested-x", "") in names["dotdot-nested"]
    assert ("link", "/tmp/tc-evil-x-dir") in names["symlink-abs"]
    assert ("link/evil", "") in names["symlink-abs"]
    assert ("hl", "../../etc/passwd") in names["hardlink-rel"]
    assert ("hl", "/tmp/tc-evil-x-victim") in names["hardlink-abs"]
    mm = ib.diffid_mismatch_image()
    assert mm.diff_ids[0] != mm.layers[0].diff_id


def test_infra_archives_for_import():
    import tarfile
    import io
    img = ib.busybox_image(Labels={"tinycri.test": "archive"})
    t = tarfile.open(fileobj=io.BytesIO(ib.docker_save_archive(img, ["a.example/x:v1"])))
    m = json.load(t.extractfile("manifest.json"))
    assert m[0]["RepoTags"] == ["a.example/x:v1"]
    assert ib.sha256(t.extractfile(m[0]["Config"]).read()) == img.id
    assert ib.sha256(t.extractfile(m[0]["Layers"][0]).read()) == img.diff_ids[0]
    t = tarfile.open(fileobj=io.BytesIO(ib.oci_layout_archive(img, "a.example/x:v2")))
    idx = json.load(t.extractfile("index.json"))
    d = idx["manifests"][0]
    assert d["digest"] == img.digest
    assert d["annotations"]["io.containerd.image.name"] == "a.example/x:v2"
    for b in img.blobs() + [img.manifest]:
        assert ib.sha256(t.extractfile("blobs/sha256/" + b.hex).read()) == b.digest


def test_infra_registries_serve_pushed_images(pushed_images, plain_registry, tls_registry,
                                              basic_registry, token_registry):
    for name in ("busybox", "busybox-docker", "multiarch", "multiarch-docker", "zstd",
                 "whiteout", "uncompressed", "diffid-mismatch", "multiarch-os"):
        plain_registry.client().pull_check(name, "latest")
    ct, dg, _ = plain_registry.client().get_manifest("multiarch", "latest")
    assert (ct, dg) == (ib.OCI_INDEX, pushed_images["multiarch"].digest)
    ct, dg, _ = plain_registry.client().get_manifest("busybox-docker", "latest")
    assert (ct, dg) == (ib.DOCKER_MANIFEST, pushed_images["busybox-docker"].digest)
    img = pushed_images["busybox"]
    for r in (tls_registry, basic_registry, token_registry):
        assert r.ensure("busybox", "latest", img) == img.digest
        assert r.client().pull_check("busybox", "latest")["config"]["digest"] == img.id
    # Anonymous pulls are refused where auth is configured ...
    for r in (basic_registry, token_registry):
        with pytest.raises(ib.RegistryError) as ei:
            r.client(authenticated=False).get_manifest("busybox", "latest")
        assert ei.value.status == 401
    # ... and TLS is not trusted without the CA.
    with pytest.raises(urllib.error.URLError) as ei:
        ib.RegistryClient(tls_registry.url).ping()
    assert isinstance(ei.value.reason, ssl.SSLError)
    assert ib.RegistryClient(tls_registry.url, ca_file=tls_registry.ca_file).ping() == 200
    ctx = ssl.create_default_context(cafile=tls_registry.ca_file)
    ctx.check_hostname = True
    c = http.client.HTTPSConnection("localhost", tls_registry.port, context=ctx, timeout=10)
    c.request("GET", "/v2/")
    assert c.getresponse().status == 200
    # The registry's access log is readable.
    assert plain_registry.blob_gets(img.layers[0].digest) >= 1


def test_infra_token_server(token_registry):
    ts = token_registry.token_server
    img = ib.busybox_image()
    token_registry.ensure("busybox", "latest", img)
    before = token_registry.token_requests
    token_registry.client().get_manifest("busybox", "latest")
    assert token_registry.token_requests > before
    # A minted token is accepted as is; one without the scope is not.
    tok = ts.mint(["repository:busybox:pull"])
    ib.RegistryClient(token_registry.url, token=tok).get_manifest("busybox", "latest")
    with pytest.raises(ib.RegistryError):
        ib.RegistryClient(token_registry.url, token=ts.mint([])).get_manifest("busybox", "latest")
    # JWT header carries x5c.
    header = json.loads(base64.urlsafe_b64decode(tok.split(".")[0] + "=="))
    assert header["alg"] == "RS256" and header["x5c"]
    # GET with credentials, the OAuth2 refresh flow, wrong password.
    def get(url, headers=None, data=None):
        req = urllib.request.Request(url, headers=headers or {}, data=data)
        try:
            with urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, None
    basic = "Basic " + base64.b64encode(b"%s:%s" % (token_registry.username.encode(),
                                                     token_registry.password.encode())).decode()
    st, j = get(ts.realm + "?service=%s&scope=repository:busybox:pull&offline_token=true"
                % ts.service, {"Authorization": basic})
    assert st == 200 and j["token"] == j["access_token"] and j["expires_in"] == 300
    assert j["refresh_token"] == ts.refresh_token and j["issued_at"]
    st, j = get(ts.realm, data=("grant_type=refresh_token&refresh_token=%s&service=%s"
                                "&scope=repository:busybox:pull&client_id=t"
                                % (ts.refresh_token, ts.service)).encode())
    assert st == 200
    ib.RegistryClient(token_registry.url, token=j["access_token"]).get_manifest("busybox",
                                                                               "latest")
    st, _ = get(ts.realm + "?scope=repository:busybox:pull",
                {"Authorization": "Basic " + base64.b64encode(b"tcuser:wrong").decode()})
    assert st == 401


def test_infra_proxy_cut_range_rewrite_hold(pushed_images, registry_proxy):
    p = registry_proxy
    img = pushed_images["busybox"]
    layer = img.layers[0].blob
    c = ib.RegistryClient(p.url)
    assert c.pull_check("busybox", "latest")["config"]["digest"] == img.id
    assert p.blob_gets(layer.digest) == 1 and p.count("GET", "/manifests/latest") == 1

    # cut: the first GET ends after 100000 bytes; a Range request gets the rest.
    p.reset()
    p.cut_once(layer.digest, 100000)
    url = p.url + "/v2/busybox/blobs/" + layer.digest
    with pytest.raises((http.client.IncompleteRead, ConnectionError)) as ei:
        with urlopen(url, timeout=10) as r:
            r.read()
    partial = ei.value.partial if isinstance(ei.value, http.client.IncompleteRead) else b""
    assert len(partial) == 100000
    req = urllib.request.Request(url, headers={"Range": "bytes=100000-"})
    with urlopen(req, timeout=10) as r:
        assert r.status == 206
        rest = r.read()
    assert ib.sha256(partial + rest) == layer.digest
    assert p.ranges_for(layer.digest) == ["bytes=100000-"]
    assert p.blob_gets(layer.digest) == 2

    # rewrite and corrupt change bodies (and only of the matching path).
    p.reset()
    p.corrupt(layer.digest)
    body = urlopen(url, timeout=10).read()
    assert len(body) == layer.size and ib.sha256(body) != layer.digest
    p.clear_rules()
    p.rewrite(img.config.digest, lambda b: json.dumps(json.loads(b), indent=1).encode())
    body = urlopen(p.url + "/v2/busybox/blobs/" + img.config.digest,
                                  timeout=10).read()
    assert json.loads(body) == img.config_json and ib.sha256(body) != img.id
    p.clear_rules()

    # hold: bytes stop at the hold point until release().
    reached = p.hold(layer.digest, 65536)
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(lambda: urlopen(url, timeout=20).read())
        assert reached.wait(10)
        time.sleep(0.2)
        assert not fut.done()
        assert p.max_active_blobs == 1
        p.release()
        assert ib.sha256(fut.result(20)) == layer.digest

    # throttle slows bodies down.
    p.throttle(2 << 20)
    t0 = time.monotonic()
    urlopen(url, timeout=20).read()
    assert time.monotonic() - t0 > 0.3
    p.clear_rules()


def test_infra_broken_mirrors(broken_mirror):
    for status in (404, 500):
        m = broken_mirror(status)
        with pytest.raises(urllib.error.HTTPError) as ei:
            urlopen(m.url + "/v2/", timeout=5)
        assert ei.value.code == status
        assert m.count("GET", "/v2/") == 1
    dead = broken_mirror(None)
    with pytest.raises(urllib.error.URLError) as ei:
        urlopen(dead.url + "/v2/", timeout=5)
    assert isinstance(ei.value.reason, ConnectionRefusedError)


# --------------------------------------------------------------------------
# Pulling and inspecting
# --------------------------------------------------------------------------

@pytest.fixture
def plain_daemon(daemon, pushed_images):
    """A daemon that may pull from the plain registry."""
    def make(extra=None, start=True, hosts=()):
        return daemon(config=merge(registry_section(pushed_images.host, *hosts), extra or {}),
                      start=start)
    return make


def test_pull_by_tag(plain_daemon, pushed_images):
    d = plain_daemon()
    img = pushed_images["busybox"]
    ref = pushed_images.ref("busybox")
    assert pull(d, ref) == img.id
    im = status_image(d, ref)
    assert im is not None, "ImageStatus has no image after PullImage"
    assert im.id == img.id
    assert list(im.repo_tags) == [ref]
    assert list(im.repo_digests) == ["%s/busybox@%s" % (pushed_images.host, img.digest)]
    assert im.size > 0
    assert im.size >= img.layers[0].blob.size // 2, "size %d is implausibly small" % im.size
    assert not im.HasField("uid") and im.username == ""


def test_pull_by_digest(plain_daemon, pushed_images):
    d = plain_daemon()
    img = pushed_images["busybox"]
    dref = pushed_images.digest_ref("busybox")
    assert pull(d, dref) == img.id
    im = status_image(d, dref)
    assert im is not None and im.id == img.id
    assert dref in im.repo_digests
    # The same image, looked up by its id.
    assert status_image(d, img.id).id == img.id


def test_pull_without_tag_means_latest(plain_daemon, pushed_images):
    d = plain_daemon()
    img = pushed_images["busybox"]
    name = "%s/busybox" % pushed_images.host
    assert pull(d, name) == img.id
    im = status_image(d, name)
    assert im is not None and im.id == img.id
    assert list(im.repo_tags) == [name + ":latest"]
    assert status_image(d, name + ":latest").id == img.id


def test_pull_docker_schema2(plain_daemon, pushed_images):
    d = plain_daemon()
    img = pushed_images["busybox-docker"]
    ref = pushed_images.ref("busybox-docker")
    assert pull(d, ref) == img.id
    im = status_image(d, ref)
    assert list(im.repo_digests) == [pushed_images.digest_ref("busybox-docker")]


def test_pull_twice_is_the_same_image(plain_daemon, pushed_images):
    d = plain_daemon()
    ref = pushed_images.ref("busybox")
    assert pull(d, ref) == pull(d, ref) == pushed_images["busybox"].id
    assert len(list_images(d)) == 1


def test_two_tags_of_one_image(plain_daemon, pushed_images, plain_registry):
    img = pushed_images["busybox"]
    plain_registry.ensure("busybox", "second", img)
    d = plain_daemon()
    a, b = pushed_images.ref("busybox"), pushed_images.ref("busybox", "second")
    assert pull(d, a) == pull(d, b) == img.id
    images = list_images(d)
    assert [i.id for i in images] == [img.id]
    assert sorted(images[0].repo_tags) == sorted([a, b])
    assert list(images[0].repo_digests) == [pushed_images.digest_ref("busybox")]


def test_image_status_of_unknown_image_is_empty(plain_daemon, pushed_images):
    d = plain_daemon()
    for ref in (pushed_images.ref("busybox"), "docker.io/library/never-pulled:latest",
                "sha256:" + "ab" * 32):
        r = image_status(d, ref)
        assert not r.HasField("image"), "ImageStatus(%s) gave an image" % ref
    pull(d, pushed_images.ref("busybox"))
    assert status_image(d, pushed_images.ref("busybox", "other")) is None


@pytest.mark.parametrize("name, uid, username", [
    ("user-uid", 1000, ""),
    ("user-name", None, "app"),
    ("full-config", 1000, ""),
])
def test_image_user(plain_daemon, pushed_images, name, uid, username):
    d = plain_daemon()
    pull(d, pushed_images.ref(name))
    im = status_image(d, pushed_images.ref(name))
    assert im.id == pushed_images[name].id
    if uid is None:
        assert not im.HasField("uid"), "uid %d set for a named user" % im.uid.value
    else:
        assert im.HasField("uid") and im.uid.value == uid
    assert im.username == username


def test_image_status_verbose_info(plain_daemon, pushed_images):
    d = plain_daemon()
    img = pushed_images["whiteout"]
    pull(d, pushed_images.ref("whiteout"))
    r = image_status(d, pushed_images.ref("whiteout"), verbose=True)
    assert r.image.id == img.id
    assert r.info, "verbose ImageStatus gave no info"
    parsed = info_json(r)
    nodes = [o for v in parsed.values() for o in walk_json(v)]
    configs = [o for o in nodes if isinstance(o, dict) and "architecture" in o and "rootfs" in o]
    assert configs, "no image config (architecture, rootfs) in info: %s" % list(parsed)
    assert configs[0]["architecture"] == ib.goarch()[0] and configs[0]["os"] == "linux"
    assert configs[0]["rootfs"]["diff_ids"] == img.diff_ids
    strings = {o for o in nodes if isinstance(o, str)}
    for layer in img.layers:
        assert layer.digest in strings, "layer %s not in verbose info" % layer.digest
    assert img.config.digest in strings, "config digest not in verbose info"
    assert any(isinstance(o, dict) and isinstance(o.get("layers"), list) for o in nodes), \
        "no manifest (a \"layers\" list) in verbose info"
    # Not verbose: no info.
    assert not image_status(d, pushed_images.ref("whiteout")).info


def test_list_images_and_filter(plain_daemon, pushed_images):
    d = plain_daemon()
    assert list_images(d) == []
    a, b = pushed_images.ref("busybox"), pushed_images.ref("user-uid")
    pull(d, a)
    pull(d, b)
    by_id = {i.id: i for i in list_images(d)}
    assert set(by_id) == {pushed_images["busybox"].id, pushed_images["user-uid"].id}
    assert list(by_id[pushed_images["user-uid"].id].repo_tags) == [b]
    assert by_id[pushed_images["user-uid"].id].uid.value == 1000
    for i in by_id.values():
        assert i.size > 0
    only = list_images(d, a)
    assert [i.id for i in only] == [pushed_images["busybox"].id]
    assert [i.id for i in list_images(d, pushed_images["user-uid"].id)] == \
        [pushed_images["user-uid"].id]
    assert list_images(d, pushed_images.ref("never-pushed")) == []
    assert len(list_images(d, "")) == 2  # an empty filter is no filter


@pytest.mark.parametrize("name", ["multiarch", "multiarch-docker", "multiarch-os"])
def test_multiarch_index_picks_this_machine(plain_daemon, pushed_images, name):
    d = plain_daemon()
    index = pushed_images[name]
    native = index.native()
    ref = pushed_images.ref(name)
    assert pull(d, ref) == native.id, "picked the wrong platform of %s" % [
        "%s/%s=%s" % (i.os, i.arch, i.id[:19]) for i in index.images]
    im = status_image(d, ref)
    assert im.id == native.id
    # The repo digest is the digest the tag points at: the index.
    assert list(im.repo_digests) == [pushed_images.digest_ref(name)]
    r = image_status(d, ref, verbose=True)
    archs = {o["architecture"] for v in info_json(r).values() for o in walk_json(v)
             if isinstance(o, dict) and "architecture" in o and "rootfs" in o}
    assert archs == {ib.goarch()[0]}
    # Pulling by that repo digest gives the same image.
    assert pull(d, im.repo_digests[0]) == native.id
    assert len(list_images(d)) == 1


@pytest.mark.parametrize("name", ["zstd", "uncompressed"])
def test_layer_compressions(plain_daemon, pushed_images, name):
    d = plain_daemon()
    img = pushed_images[name]
    assert pull(d, pushed_images.ref(name)) == img.id
    top = find_layer_dir(d.root, img.chain_ids[0], "bin/busybox")
    assert os.path.islink(os.path.join(top, "bin/sh"))
    with open(os.path.join(top, "bin/busybox"), "rb") as f:
        assert ib.sha256(f.read()) == ib.sha256(open(ib.BUSYBOX, "rb").read())
    if name == "zstd":
        l2 = find_layer_dir(d.root, img.chain_ids[1], "zstd/marker")
        with open(os.path.join(l2, "zstd/marker")) as f:
            assert f.read() == "zstd layer\n"


def test_daemon_never_maps_libarchive(plain_daemon, pushed_images):
    """Only the forked unpack children load libarchive (and its libxml2/ICU/libstdc++ tree)."""
    d = plain_daemon()
    for name in ("busybox", "zstd"):
        img = pushed_images[name]
        assert pull(d, pushed_images.ref(name)) == img.id
    with open("/proc/%d/maps" % d.pid) as f:
        maps = f.read()
    for lib in ("libarchive.so", "libxml2.so", "libicuuc.so"):
        assert lib not in maps


def test_whiteouts_become_overlay_whiteouts(plain_daemon, pushed_images):
    d = plain_daemon()
    img = pushed_images["whiteout"]
    assert pull(d, pushed_images.ref("whiteout")) == img.id
    base = find_layer_dir(d.root, img.chain_ids[0], "bin/busybox")
    st = os.stat(os.path.join(base, "tmp"))
    assert stat.S_IMODE(st.st_mode) == 0o1777
    assert os.stat(os.path.join(base, "home/app")).st_uid == 1000
    assert os.readlink(os.path.join(base, "bin/sh")) == "busybox"

    lower = find_layer_dir(d.root, img.chain_ids[1], "data/b.txt")
    with open(os.path.join(lower, ib.WHITEOUT_DELETED)) as f:
        assert f.read() == "a\n"
    assert os.path.isfile(os.path.join(lower, "opq/x"))
    with pytest.raises(OSError):
        os.getxattr(os.path.join(lower, "opq"), "trusted.overlay.opaque")

    upper = find_layer_dir(d.root, img.chain_ids[2], "opq/new")
    wh = os.lstat(os.path.join(upper, ib.WHITEOUT_DELETED))
    assert stat.S_ISCHR(wh.st_mode), "data/a.txt is not a character device (mode %o)" % wh.st_mode
    assert (os.major(wh.st_rdev), os.minor(wh.st_rdev)) == (0, 0)
    assert not os.path.lexists(os.path.join(upper, "data/.wh.a.txt"))
    assert not os.path.lexists(os.path.join(upper, "data/b.txt"))
    opq = os.path.join(upper, ib.WHITEOUT_OPAQUE)
    assert os.getxattr(opq, "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(os.path.join(opq, ".wh..wh..opq"))
    assert sorted(os.listdir(opq)) == ["new"]


def test_pull_unknown_tag_is_not_found(plain_daemon, pushed_images):
    d = plain_daemon()
    e = pull_fails(d, pushed_images.ref("busybox", "no-such-tag"))
    assert e.code() == grpc.StatusCode.NOT_FOUND, e
    e = pull_fails(d, pushed_images.ref("no-such-repo"))
    assert e.code() == grpc.StatusCode.NOT_FOUND, e
    assert list_images(d) == []


@pytest.mark.parametrize("ref", ["UPPER/Case", "", "busybox:bad tag", "busybox@sha256:12",
                                 "a" * 300 + "/x:latest"])
def test_bad_reference_is_invalid_argument(daemon, ref):
    d = daemon()
    e = pull_fails(d, ref, timeout=RPC_TIMEOUT)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (ref, e)


# --------------------------------------------------------------------------
# Authentication and TLS
# --------------------------------------------------------------------------

def test_basic_auth(daemon, basic_registry, pushed_images):
    img = pushed_images["busybox"]
    basic_registry.ensure("busybox", "latest", img)
    d = daemon(config=registry_section(basic_registry.host))
    ref = basic_registry.ref("busybox")
    e = pull_fails(d, ref)
    assert e.code() in AUTH_CODES, e
    e = pull_fails(d, ref, auth_config(username=basic_registry.username, password="wrong"))
    assert e.code() in AUTH_CODES, e
    assert list_images(d) == []
    assert pull(d, ref, auth_config(username=basic_registry.username,
                                    password=basic_registry.password)) == img.id
    assert status_image(d, ref).id == img.id


def test_basic_auth_pre_encoded(daemon, basic_registry, pushed_images):
    img = pushed_images["busybox"]
    basic_registry.ensure("busybox", "latest", img)
    d = daemon(config=registry_section(basic_registry.host))
    blob = base64.b64encode(("%s:%s" % (basic_registry.username,
                                        basic_registry.password)).encode()).decode()
    assert pull(d, basic_registry.ref("busybox"), auth_config(auth=blob)) == img.id


def test_basic_auth_from_config(daemon, basic_registry, pushed_images):
    img = pushed_images["busybox"]
    basic_registry.ensure("busybox", "latest", img)
    d = daemon(config=registry_section(basic_registry.host, username=basic_registry.username,
                                       password=basic_registry.password))
    assert pull(d, basic_registry.ref("busybox")) == img.id


def test_token_auth(daemon, token_registry, pushed_images):
    img = pushed_images["busybox"]
    token_registry.ensure("busybox", "latest", img)
    d = daemon(config=registry_section(token_registry.host))
    ref = token_registry.ref("busybox")
    e = pull_fails(d, ref)
    assert e.code() in AUTH_CODES, e
    e = pull_fails(d, ref, auth_config(username=token_registry.username, password="wrong"))
    assert e.code() in AUTH_CODES, e
    assert list_images(d) == []
    before = token_registry.token_requests
    assert pull(d, ref, auth_config(username=token_registry.username,
                                    password=token_registry.password)) == img.id
    assert token_registry.token_requests > before, "the token realm was never asked"


def test_token_auth_registry_token(daemon, token_registry, pushed_images):
    img = pushed_images["busybox"]
    token_registry.ensure("busybox", "latest", img)
    d = daemon(config=registry_section(token_registry.host))
    tok = token_registry.token_server.mint(["repository:busybox:pull"])
    assert pull(d, token_registry.ref("busybox"), auth_config(registry_token=tok)) == img.id


def test_token_auth_identity_token(daemon, token_registry, pushed_images):
    img = pushed_images["busybox"]
    token_registry.ensure("busybox", "latest", img)
    d = daemon(config=registry_section(token_registry.host))
    auth = auth_config(username=token_registry.username,
                       identity_token=token_registry.token_server.refresh_token)
    assert pull(d, token_registry.ref("busybox"), auth) == img.id


def test_tls_registry_with_ca_file(daemon, tls_registry, pushed_images):
    img = pushed_images["busybox"]
    tls_registry.ensure("busybox", "latest", img)
    d = daemon(config={"registry." + tls_registry.host: {"ca_file": tls_registry.ca_file}})
    assert pull(d, tls_registry.ref("busybox")) == img.id


def test_tls_registry_without_ca_fails(daemon, tls_registry, pushed_images):
    tls_registry.ensure("busybox", "latest", pushed_images["busybox"])
    d = daemon()
    e = pull_fails(d, tls_registry.ref("busybox"))
    assert e.code() != grpc.StatusCode.OK
    assert list_images(d) == []


# --------------------------------------------------------------------------
# Mirrors and an unreliable network
# --------------------------------------------------------------------------

@pytest.mark.parametrize("first", ["closed", 404, 500])
def test_mirror_fallback_to_origin(daemon, pushed_images, broken_mirror, first):
    img = pushed_images["busybox"]
    m1 = broken_mirror(None if first == "closed" else first)
    m2 = broken_mirror(404)
    d = daemon(config=registry_section(pushed_images.host,
                                       mirrors="%s,%s" % (m1.url, m2.url)))
    assert pull(d, pushed_images.ref("busybox")) == img.id
    if first != "closed":
        assert m1.log, "the first mirror was never tried"
    assert m2.log, "the second mirror was never tried"
    assert list(status_image(d, pushed_images.ref("busybox")).repo_tags) == \
        [pushed_images.ref("busybox")]


def test_mirror_serves_when_origin_is_down(daemon, pushed_images, registry_proxy,
                                          broken_mirror):
    img = pushed_images["busybox"]
    origin = broken_mirror(None)
    d = daemon(config=registry_section(origin.host, mirrors=registry_proxy.url))
    ref = "%s/busybox:latest" % origin.host
    assert pull(d, ref) == img.id
    assert registry_proxy.count("GET", "/v2/busybox/manifests/") >= 1
    assert registry_proxy.blob_gets(img.layers[0].digest) == 1
    im = status_image(d, ref)
    assert list(im.repo_tags) == [ref]


def test_connection_cut_mid_blob_resumes_with_range(daemon, pushed_images, registry_proxy):
    img = pushed_images["busybox"]
    layer = img.layers[0].blob
    cut = 300000
    registry_proxy.cut_once(layer.digest, cut)
    d = daemon(config=registry_section(registry_proxy.host))
    assert pull(d, pushed_images.ref("busybox", host=registry_proxy.host)) == img.id
    ranges = registry_proxy.ranges_for(layer.digest)
    assert ranges, "no Range request after the cut (blob GETs: %d)" \
        % registry_proxy.blob_gets(layer.digest)
    m = re.match(r"bytes=(\d+)-$", ranges[0])
    assert m and 0 < int(m.group(1)) <= cut, ranges
    assert registry_proxy.blob_gets(layer.digest) == 2
    top = find_layer_dir(d.root, img.chain_ids[0], "bin/busybox")
    assert os.path.getsize(os.path.join(top, "bin/busybox")) == os.path.getsize(ib.BUSYBOX)


def assert_nothing_kept(d, img, probes=()):
    """After a failed pull of img: not listed, no layer dir of it, none of the probe
    names unpacked anywhere under the daemon's root."""
    assert img.id not in listed_ids(d)
    assert list_images(d) == []
    left = leftover_layer_dirs(d.root, img.chain_ids + [l.diff_id for l in img.layers])
    assert not left, "layer directories left after a failed pull: %s" % left
    hits = find_named(d.root, set(probes))
    assert not hits, "unpacked files left after a failed pull: %s" % hits


def test_diff_id_mismatch_fails(plain_daemon, pushed_images):
    d = plain_daemon()
    img = pushed_images["diffid-mismatch"]
    e = pull_fails(d, pushed_images.ref("diffid-mismatch"))
    assert e.code() != grpc.StatusCode.OK
    assert_nothing_kept(d, img, probes=["etc/mismatch"])
    assert status_image(d, pushed_images.ref("diffid-mismatch")) is None


def _regzip(blob):
    """Same tar, other gzip bytes: the diff_id matches, the blob digest does not."""
    return gzip.compress(gzip.decompress(blob), compresslevel=1, mtime=12345)


@pytest.mark.parametrize("what", ["layer", "config"])
def test_blob_digest_mismatch_fails(daemon, pushed_images, registry_proxy, what):
    img = pushed_images["busybox"]
    if what == "layer":
        registry_proxy.rewrite(img.layers[0].digest, _regzip)
    else:
        registry_proxy.rewrite(img.config.digest,
                               lambda b: json.dumps(json.loads(b), indent=2).encode())
    d = daemon(config=registry_section(registry_proxy.host))
    ref = pushed_images.ref("busybox", host=registry_proxy.host)
    e = pull_fails(d, ref)
    assert e.code() != grpc.StatusCode.OK
    assert status_image(d, ref) is None
    if what == "layer":
        assert_nothing_kept(d, img, probes=["bin/busybox"])
    else:  # the (good) layers may stay as a cache; the image must not appear
        assert list_images(d) == []


def test_manifest_digest_mismatch_fails(daemon, pushed_images, registry_proxy):
    img = pushed_images["busybox"]
    # Same manifest content, other bytes: its digest is no longer the one asked for.
    registry_proxy.rewrite("/manifests/",
                           lambda b: json.dumps(json.loads(b), indent=3).encode())
    d = daemon(config=registry_section(registry_proxy.host))
    e = pull_fails(d, pushed_images.digest_ref("busybox", host=registry_proxy.host))
    assert e.code() != grpc.StatusCode.OK
    assert list_images(d) == []
    assert status_image(d, img.id) is None


@pytest.mark.parametrize("case", ["dotdot", "abs", "dotdot-nested", "symlink-abs",
                                  "symlink-rel", "hardlink-rel", "hardlink-abs"])
def test_malicious_layer_is_refused(plain_daemon, pushed_images, case):
    targets = pushed_images.targets
    os.makedirs(targets["dir"], exist_ok=True)
    with open(targets["victim"], "w") as f:
        f.write("victim\n")
    nlinks = {p: os.stat(p).st_nlink for p in (targets["victim"], "/etc/passwd")}
    img, must_not_exist = pushed_images.malicious[case]
    d = plain_daemon()
    try:
        e = got = None
        try:
            got = pull(d, pushed_images.ref("malicious-" + case))
        except grpc.RpcError as err:
            e = err
        # What was written outside the layer first: it says more than the status.
        for p in must_not_exist:
            if os.path.isabs(p):
                assert not os.path.lexists(p), "%s was written outside the layer" % p
            else:
                assert not find_named(d.tmp, {p}), "%s was written" % p
                for top in ("/", "/tmp"):
                    assert not os.path.lexists(os.path.join(top, p))
        assert os.listdir(targets["dir"]) == [], "written through a symlink into %s" \
            % targets["dir"]
        for p, n in nlinks.items():
            assert os.stat(p).st_nlink == n, "%s got hard-linked" % p
        assert e is not None, "PullImage of an unsafe layer succeeded (image_ref %s)" % got
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
        assert re.search(r"unsafe|path|link|outside|\.\.", e.details() or "", re.I), \
            "the error does not say what is wrong: %r" % e.details()
        assert_nothing_kept(d, img)
    finally:
        pushed_images.cleanup_targets()
        for p in must_not_exist:  # so that one failure does not spill into later runs
            if os.path.isabs(p) and os.path.lexists(p) and not os.path.isdir(p):
                os.unlink(p)


# --------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------

def test_concurrent_identical_pulls_download_once(daemon, pushed_images, registry_proxy):
    img = pushed_images["multilayer"]
    registry_proxy.throttle(4 << 20)  # slow enough for the two pulls to overlap
    d = daemon(config=registry_section(registry_proxy.host))
    ref = pushed_images.ref("multilayer", host=registry_proxy.host)
    f1 = pull_future(d, ref)
    f2 = pull_future(d, ref, stub=load_api().grpc.ImageServiceStub(d.channel()))
    assert f1.result().image_ref == img.id
    assert f2.result().image_ref == img.id
    registry_proxy.throttle(None)
    for b in img.blobs():
        assert registry_proxy.blob_gets(b.digest) == 1, \
            "blob %s fetched %d times" % (b.digest, registry_proxy.blob_gets(b.digest))
    assert [i.id for i in list_images(d)] == [img.id]


def test_max_concurrent_downloads(daemon, pushed_images, registry_proxy):
    img = pushed_images["multilayer"]
    assert len(img.layers) >= 5
    registry_proxy.throttle(4 << 20)
    d = daemon(config=merge(registry_section(registry_proxy.host),
                            {"image": {"max_concurrent_downloads": "2"}}))
    assert pull(d, pushed_images.ref("multilayer", host=registry_proxy.host)) == img.id
    assert 1 <= registry_proxy.max_active_blobs <= 2, registry_proxy.max_active_blobs


# --------------------------------------------------------------------------
# Storage: removal, restarts, crashes, import, usage
# --------------------------------------------------------------------------

def test_remove_image_frees_disk(plain_daemon, pushed_images):
    d = plain_daemon()
    img = pushed_images["whiteout"]
    ref = pushed_images.ref("whiteout")
    empty = du(d.root)
    pull(d, ref)
    full = du(d.root)
    assert full - empty > 1 << 20, "a pull stored only %d bytes" % (full - empty)
    remove_image(d, ref)
    assert status_image(d, ref) is None
    assert img.id not in listed_ids(d)
    wait_until(lambda: du(d.root) < empty + (full - empty) // 4, timeout=10,
               what=lambda: "disk use to drop after RemoveImage (before pull %d, after %d, "
                            "now %d):\n%s" % (empty, full, du(d.root), tree(d.root)))
    remove_image(d, ref)  # idempotent
    remove_image(d, img.id)
    remove_image(d, pushed_images.ref("never-pulled"))


def test_remove_image_by_id(plain_daemon, pushed_images):
    d = plain_daemon()
    img = pushed_images["busybox"]
    pull(d, pushed_images.ref("busybox"))
    remove_image(d, img.id)
    assert status_image(d, pushed_images.ref("busybox")) is None
    assert list_images(d) == []
    # And it can come back.
    assert pull(d, pushed_images.ref("busybox")) == img.id


def test_images_survive_restart(plain_daemon, pushed_images):
    d = plain_daemon()
    ref = pushed_images.ref("whiteout")
    pull(d, ref)
    pull(d, pushed_images.digest_ref("user-name"))
    before = {i.id: (sorted(i.repo_tags), sorted(i.repo_digests), i.size)
              for i in list_images(d)}
    assert d.stop() == 0
    d.start()
    after = {i.id: (sorted(i.repo_tags), sorted(i.repo_digests), i.size)
             for i in list_images(d)}
    assert after == before
    im = status_image(d, ref)
    assert im is not None and im.id == pushed_images["whiteout"].id
    assert status_image(d, pushed_images.digest_ref("user-name")).username == "app"


def test_kill_during_pull_leaves_no_half_image(daemon, pushed_images, registry_proxy):
    img = pushed_images["multilayer"]
    held = img.layers[-1].blob
    reached = registry_proxy.hold(held.digest, 64 << 10)
    d = daemon(config=registry_section(registry_proxy.host))
    ref = pushed_images.ref("multilayer", host=registry_proxy.host)
    fut = pull_future(d, ref)
    assert reached.wait(PULL_TIMEOUT), "the daemon never fetched layer %s" % held.digest
    time.sleep(0.3)  # let the other layers land or unpack meanwhile
    try:
        os.killpg(d.pid, signal.SIGKILL)  # the daemon and any unpacking child
    except ProcessLookupError:
        pass
    assert d.wait_exit() == -signal.SIGKILL
    registry_proxy.release()
    with pytest.raises(grpc.RpcError):
        fut.result(timeout=30)
    d.close_channels()
    registry_proxy.clear_rules()
    d.start()
    assert img.id not in listed_ids(d)
    assert status_image(d, ref) is None
    assert status_image(d, img.id) is None
    # A new pull completes.
    assert pull(d, ref) == img.id
    assert status_image(d, ref).id == img.id


IMPORT_DOCKER_REF = "registry.invalid/tinycri/imported-docker:v1"
IMPORT_OCI_REF = "registry.invalid/tinycri/imported-oci:v2"


def test_import_directory(daemon):
    docker_img = ib.busybox_image(Labels={"tinycri.test": "import-docker"})
    oci_img = ib.busybox_image(Labels={"tinycri.test": "import-oci"}, User="1000")
    d = daemon(start=False)
    import_dir = os.path.join(d.tmp, "import")
    os.mkdir(import_dir)
    with open(os.path.join(import_dir, "docker-save.tar"), "wb") as f:
        f.write(ib.docker_save_archive(docker_img, [IMPORT_DOCKER_REF]))
    with open(os.path.join(import_dir, "oci-layout.tar"), "wb") as f:
        f.write(ib.oci_layout_archive(oci_img, IMPORT_OCI_REF))
    with open(os.path.join(import_dir, "garbage.tar"), "wb") as f:
        f.write(os.urandom(70000))
    with open(os.path.join(import_dir, "truncated.tar"), "wb") as f:
        whole = ib.docker_save_archive(ib.busybox_image(Labels={"tinycri.test": "trunc"}),
                                       ["registry.invalid/tinycri/truncated:v1"])
        f.write(whole[:len(whole) // 2])
    d.write_config({"image": {"import_dir": import_dir}})
    d.start()
    # Imports may finish just after the socket starts serving.
    wait_until(lambda: {docker_img.id, oci_img.id} <= listed_ids(d), timeout=15,
               what=lambda: "both archives to be imported (listed: %s; expected docker-save "
                            "%s, OCI layout %s)" % (sorted(listed_ids(d)), docker_img.id,
                                                    oci_img.id))
    images = {i.id: i for i in list_images(d)}
    assert list(images[docker_img.id].repo_tags) == [IMPORT_DOCKER_REF]
    assert list(images[oci_img.id].repo_tags) == [IMPORT_OCI_REF]
    assert images[oci_img.id].uid.value == 1000
    assert len(images) == 2, "a broken archive produced an image: %s" % images
    assert status_image(d, IMPORT_OCI_REF).id == oci_img.id
    assert status_image(d, IMPORT_DOCKER_REF).id == docker_img.id
    # The imported layers are unpacked like pulled ones.
    find_layer_dir(d.root, oci_img.chain_ids[0], "bin/busybox")


def test_pinned_images(plain_daemon, pushed_images):
    pinned = pushed_images.ref("busybox")
    d = plain_daemon({"image": {"pinned_images": pinned}})
    pull(d, pinned)
    pull(d, pushed_images.ref("user-uid"))
    assert status_image(d, pinned).pinned is True
    assert status_image(d, pushed_images.ref("user-uid")).pinned is False
    pins = {i.id: i.pinned for i in list_images(d)}
    assert pins == {pushed_images["busybox"].id: True, pushed_images["user-uid"].id: False}


def test_image_fs_info(plain_daemon, pushed_images):
    d = plain_daemon()
    pull(d, pushed_images.ref("busybox"))
    r = d.image.ImageFsInfo(pb().ImageFsInfoRequest(), timeout=RPC_TIMEOUT)
    assert len(r.image_filesystems) >= 1
    fs = r.image_filesystems[0]
    mp = fs.fs_id.mountpoint
    assert mp == d.root or mp.startswith(d.root.rstrip("/") + "/"), mp
    assert fs.HasField("used_bytes") and fs.used_bytes.value > 0
    assert fs.HasField("inodes_used") and fs.inodes_used.value > 0
    assert fs.timestamp > 0
    now_ns = time.time_ns()
    assert abs(now_ns - fs.timestamp) < 600 * 10**9, "timestamp is not in nanoseconds"
