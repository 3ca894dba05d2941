# SPDX-License-Identifier: Apache-2.0
"""Build OCI and Docker images in Python and push them to a registry (HTTP API v2).

Everything is deterministic: tar entries have a fixed mtime and uid/gid 0 unless
told otherwise, gzip streams have mtime 0, JSON is serialised with sorted keys.
The same builder call therefore gives the same digests in every run.

Debian packages: busybox-static (/bin/busybox, the one binary of the test
images), zstd (the `zstd` CLI, for zstd-compressed layers).

Model:
  Blob       bytes + media type -> .digest, .size, .descriptor()
  Layer      an uncompressed tar (.tar, .diff_id) and its blob as pushed (.blob)
  Image      config + layers -> .config (Blob), .manifest (Blob), .id (the config
             digest: what PullImage must return), .digest (the manifest digest)
  Index      several Images with their platforms -> .manifest (Blob), .digest
  push(...)  uploads the blobs and manifests of an Image or Index under a tag

Builders at the end: busybox_image, whiteout_image, zstd_image, multiarch_index,
user images, multilayer_image (big, for benchmarks), malicious images,
diffid_mismatch_image, and docker-save / OCI-layout archives for import tests.
"""
import base64
import gzip
import hashlib
import io
import json
import os
import platform
import ssl
import stat
import subprocess
import tarfile
import urllib.error
import urllib.parse
import urllib.request

BUSYBOX = "/bin/busybox"
MTIME = 1700000000  # 2023-11-14T22:13:20Z: fixed, so the tars are reproducible
CREATED = "2023-11-14T22:13:20Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)

# Commands of the busybox image, each a symlink /bin/<name> -> busybox.
BUSYBOX_APPLETS = (
    "sh", "ls", "cat", "echo", "sleep", "id", "hostname", "env", "true", "false", "wc",
    "head", "tail", "stat", "top", "ps", "mkdir", "rm", "touch", "grep", "sed", "test",
    "uname", "whoami", "pwd", "kill", "ln", "cp", "mv", "chmod", "readlink", "printf",
    "date", "dd", "mount", "df", "du", "nc", "wget", "tr", "sort", "find", "xargs",
    "sha256sum", "seq", "timeout", "nproc", "uptime", "mkfifo",
)

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "app:x:1000:1000:app:/home/app:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def goarch():
    """(architecture, variant) of this machine in OCI terms."""
    m = platform.machine()
    return {
        "x86_64": ("amd64", None),
        "amd64": ("amd64", None),
        "aarch64": ("arm64", None),
        "arm64": ("arm64", None),
        "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
        "i686": ("386", None),
        "i386": ("386", None),
        "ppc64le": ("ppc64le", None),
        "s390x": ("s390x", None),
        "riscv64": ("riscv64", None),
    }.get(m, (m, None))


def chain_ids(diff_ids):
    """The OCI ChainIDs ("sha256:…") of a layer stack given its diff_ids."""
    out = []
    for d in diff_ids:
        out.append(d if not out else sha256(("%s %s" % (out[-1], d)).encode()))
    return out


# --------------------------------------------------------------------------
# Blobs, layers, images
# --------------------------------------------------------------------------

class Blob:
    def __init__(self, data, media_type):
        self.data = data
        self.media_type = media_type
        self.digest = sha256(data)
        self.size = len(data)

    @property
    def hex(self):
        return self.digest.split(":", 1)[1]

    def descriptor(self, **extra):
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        d.update(extra)
        return d

    def __repr__(self):
        return "<Blob %s %s %d>" % (self.media_type, self.digest[:19], self.size)


class TarBuilder:
    """An uncompressed layer tar, entry by entry (raw: names are written as given,
    so unsafe ones can be made on purpose)."""

    def __init__(self, mtime=MTIME):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.mtime = mtime
        self.names = []

    def _info(self, name, type_, mode, uid=0, gid=0):
        ti = tarfile.TarInfo(name)
        ti.type = type_
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = self.mtime
        self.names.append(name)
        return ti

    def dir(self, name, mode=0o755, uid=0, gid=0):
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode, uid, gid))
        return self

    def file(self, name, data, mode=0o644, uid=0, gid=0, xattrs=None):
        if isinstance(data, str):
            data = data.encode()
        ti = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        ti.size = len(data)
        if xattrs:
            ti.pax_headers = {"SCHILY.xattr." + k: v for k, v in xattrs.items()}
        self.tar.addfile(ti, io.BytesIO(data))
        return self

    def file_from(self, name, path, mode=None):
        with open(path, "rb") as f:
            data = f.read()
        if mode is None:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        return self.file(name, data, mode)

    def symlink(self, name, target):
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.tar.addfile(ti)
        return self

    def hardlink(self, name, target):
        ti = self._info(name, tarfile.LNKTYPE, 0o644)
        ti.linkname = target
        self.tar.addfile(ti)
        return self

    def chardev(self, name, major=0, minor=0, mode=0o600):
        ti = self._info(name, tarfile.CHRTYPE, mode)
        ti.devmajor, ti.devminor = major, minor
        self.tar.addfile(ti)
        return self

    def whiteout(self, path):
        """OCI whiteout: delete <path> of a lower layer (.wh.<basename>)."""
        d, base = os.path.split(path.rstrip("/"))
        return self.file(os.path.join(d, ".wh." + base), b"", mode=0o600)

    def opaque(self, dirpath):
        """OCI opaque whiteout: hide everything a lower layer has in dirpath."""
        return self.file(os.path.join(dirpath.rstrip("/"), ".wh..wh..opq"), b"", mode=0o600)

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def gzip_bytes(data, level=6):
    return gzip.compress(data, compresslevel=level, mtime=0)


def zstd_bytes(data, level=3):
    return subprocess.run(["zstd", "-q", "-c", "-%d" % level, "-"], input=data,
                          stdout=subprocess.PIPE, check=True).stdout


class Layer:
    """compression: "gzip", "zstd" or None; docker=True gives the Docker media type."""

    def __init__(self, tar, compression="gzip", docker=False, gzip_level=6):
        if isinstance(tar, TarBuilder):
            tar = tar.bytes()
        self.tar = tar
        self.diff_id = sha256(tar)
        self.compression = compression
        if compression == "gzip":
            data = gzip_bytes(tar, gzip_level)
            mt = DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP
        elif compression == "zstd":
            assert not docker, "Docker schema2 has no zstd layer type"
            data = zstd_bytes(tar)
            mt = OCI_LAYER_ZSTD
        elif compression is None:
            data = tar
            mt = OCI_LAYER
        else:
            raise ValueError(compression)
        self.blob = Blob(data, mt)

    @property
    def digest(self):
        return self.blob.digest

    def as_docker(self):
        assert self.compression == "gzip"
        l = Layer.__new__(Layer)
        l.tar, l.diff_id, l.compression = self.tar, self.diff_id, self.compression
        l.blob = Blob(self.blob.data, DOCKER_LAYER_GZIP)
        return l


class Image:
    """One platform image: config + layers + manifest.

    docker=True makes a Docker schema2 manifest (and Docker media types), else OCI.
    config_overrides go into config.config (User, WorkingDir, Entrypoint, Cmd, Env,
    Volumes, StopSignal, Labels, ExposedPorts). diff_ids, when given, replace the
    computed ones in rootfs (to make a broken image on purpose)."""

    def __init__(self, layers, arch=None, variant=None, os_name="linux", docker=False,
                 diff_ids=None, history=True, annotations=None, **config_overrides):
        if arch is None:
            arch, variant = goarch()
        self.arch, self.variant, self.os = arch, variant, os_name
        self.docker = docker
        self.layers = [l.as_docker() if docker and l.blob.media_type == OCI_LAYER_GZIP else l
                       for l in layers]
        cfg = {"Env": [PATH_ENV], "Cmd": ["sh"]}
        for k, v in config_overrides.items():
            if v is not None:
                cfg[k] = v
        self.config_json = {
            "architecture": arch,
            "os": os_name,
            "created": CREATED,
            "config": cfg,
            "rootfs": {"type": "layers",
                       "diff_ids": (list(diff_ids) if diff_ids
                                    else [l.diff_id for l in self.layers])},
        }
        if variant:
            self.config_json["variant"] = variant
        if history:
            self.config_json["history"] = [{"created": CREATED, "created_by": "tinycri imagebuild"}
                                           for _ in self.layers]
        self.config = Blob(canonical_json(self.config_json),
                           DOCKER_CONFIG if docker else OCI_CONFIG)
        m = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": self.config.descriptor(),
            "layers": [l.blob.descriptor() for l in self.layers],
        }
        if annotations and not docker:
            m["annotations"] = dict(annotations)
        self.manifest_json = m
        self.manifest = Blob(canonical_json(m), m["mediaType"])

    @property
    def id(self):
        """The image id tinycri reports: the config digest."""
        return self.config.digest

    @property
    def digest(self):
        """The manifest digest (what repo_digests carry)."""
        return self.manifest.digest

    @property
    def diff_ids(self):
        return self.config_json["rootfs"]["diff_ids"]

    @property
    def chain_ids(self):
        return chain_ids(self.diff_ids)

    def platform(self):
        p = {"architecture": self.arch, "os": self.os}
        if self.variant:
            p["variant"] = self.variant
        return p

    def blobs(self):
        """Every blob the manifest references (config last, as registries like it)."""
        return [l.blob for l in self.layers] + [self.config]

    def __repr__(self):
        return "<Image %s/%s %s>" % (self.os, self.arch, self.id[:19])


class Index:
    """An OCI image index (docker=False) or a Docker manifest list (docker=True)."""

    def __init__(self, images, docker=False, annotations=None):
        self.images = list(images)
        self.docker = docker
        m = {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST if docker else OCI_INDEX,
            "manifests": [im.manifest.descriptor(platform=im.platform()) for im in self.images],
        }
        if annotations and not docker:
            m["annotations"] = dict(annotations)
        self.manifest_json = m
        self.manifest = Blob(canonical_json(m), m["mediaType"])

    @property
    def digest(self):
        return self.manifest.digest

    def image_for(self, arch, variant=None, os_name="linux"):
        for im in self.images:
            if im.arch == arch and im.os == os_name and (variant is None or im.variant == variant):
                return im
        raise KeyError((os_name, arch, variant))

    def native(self):
        """The entry a daemon on this machine must choose."""
        arch, variant = goarch()
        return self.image_for(arch, variant)


# --------------------------------------------------------------------------
# Registry HTTP API v2 client (push, and enough pulling to check the registries)
# --------------------------------------------------------------------------

class RegistryError(Exception):
    def __init__(self, status, msg):
        super().__init__("%s: %s" % (status, msg))
        self.status = status


def _parse_challenge(header):
    """'Bearer realm="x",service="y",scope="z"' -> ("bearer", {realm:…, …})."""
    scheme, _, rest = header.partition(" ")
    params = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,":
            i += 1
        j = rest.find("=", i)
        if j < 0:
            break
        key = rest[i:j].strip().lower()
        i = j + 1
        if i < n and rest[i] == '"':
            k = rest.find('"', i + 1)
            k = n if k < 0 else k
            params[key] = rest[i + 1:k]
            i = k + 1
        else:
            k = rest.find(",", i)
            k = n if k < 0 else k
            params[key] = rest[i:k].strip()
            i = k
    return scheme.lower(), params


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **kw):
        return None


class RegistryClient:
    """A small Registry API v2 client over urllib.

    base: "http://127.0.0.1:5000" or "https://…"; username/password for Basic auth
    or for the Bearer token realm (challenge-driven); token: a fixed bearer token;
    ca_file: the CA to trust for https."""

    def __init__(self, base, username=None, password=None, token=None, ca_file=None, timeout=60):
        self.base = base.rstrip("/")
        self.username, self.password = username, password
        self.fixed_token = token
        self.timeout = timeout
        self.tokens = {}  # scope -> bearer token
        self.ctx = None
        if self.base.startswith("https:"):
            self.ctx = ssl.create_default_context(cafile=ca_file)
        handlers = [_NoRedirect()]
        if self.ctx:
            handlers.append(urllib.request.HTTPSHandler(context=self.ctx))
        # ProxyHandler({}) so that http_proxy in the environment never diverts loopback
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), *handlers)

    # -- transport -------------------------------------------------------------

    def _basic(self):
        raw = ("%s:%s" % (self.username, self.password)).encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _raw(self, method, url, data=None, headers=None):
        req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        try:
            with self.opener.open(req, timeout=self.timeout) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as e:
            body = e.read() if e.fp else b""
            return e.code, dict(e.headers.items()) if e.headers else {}, body

    def fetch_token(self, realm, service, scope):
        q = {}
        if service:
            q["service"] = service
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(q)
        for s in (scope or "").split(" "):
            if s:
                url += "&scope=" + urllib.parse.quote(s, safe="")
        headers = {}
        if self.username is not None:
            headers["Authorization"] = self._basic()
        status, _, body = self._raw("GET", url, headers=headers)
        if status != 200:
            raise RegistryError(status, "token request to %s failed: %r" % (realm, body[:200]))
        j = json.loads(body)
        return j.get("token") or j["access_token"]

    def request(self, method, path, data=None, headers=None, scope=None, ok=(200,)):
        """One request with auth handled; returns (status, headers, body); raises on a
        status not in ok."""
        url = path if path.startswith("http") else self.base + path
        headers = dict(headers or {})
        if self.fixed_token:
            headers["Authorization"] = "Bearer " + self.fixed_token
        elif scope in self.tokens:
            headers["Authorization"] = "Bearer " + self.tokens[scope]
        elif self.username is not None and getattr(self, "_basic_ok", False):
            headers["Authorization"] = self._basic()
        status, rh, body = self._raw(method, url, data, headers)
        if status == 401 and not self.fixed_token:
            chal = rh.get("WWW-Authenticate") or rh.get("Www-Authenticate") or ""
            scheme, params = _parse_challenge(chal)
            if scheme == "basic" and self.username is not None:
                self._basic_ok = True
                headers["Authorization"] = self._basic()
            elif scheme == "bearer":
                sc = params.get("scope") or scope
                tok = self.fetch_token(params["realm"], params.get("service"), sc)
                self.tokens[scope] = tok
                headers["Authorization"] = "Bearer " + tok
            else:
                raise RegistryError(status, "%s %s: unauthorized (%s)" % (method, url, chal))
            status, rh, body = self._raw(method, url, data, headers)
        if status not in ok:
            raise RegistryError(status, "%s %s -> %d %r" % (method, url, status, body[:300]))
        return status, rh, body

    # -- API ---------------------------------------------------------------------

    def ping(self):
        return self.request("GET", "/v2/", ok=(200, 401))[0]

    def blob_exists(self, repo, digest):
        scope = "repository:%s:pull,push" % repo
        st, _, _ = self.request("HEAD", "/v2/%s/blobs/%s" % (repo, digest), scope=scope,
                                ok=(200, 404))
        return st == 200

    def push_blob(self, repo, blob):
        """Upload unless present (HEAD first): POST uploads/, then PUT <location>&digest=."""
        scope = "repository:%s:pull,push" % repo
        if self.blob_exists(repo, blob.digest):
            return False
        _, h, _ = self.request("POST", "/v2/%s/blobs/uploads/" % repo, data=b"",
                               headers={"Content-Length": "0"}, scope=scope, ok=(202,))
        loc = h.get("Location") or h.get("location")
        if loc.startswith("/"):
            loc = self.base + loc
        loc += ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(blob.digest)
        self.request("PUT", loc, data=blob.data,
                     headers={"Content-Type": "application/octet-stream",
                              "Content-Length": str(blob.size)},
                     scope=scope, ok=(201,))
        return True

    def put_manifest(self, repo, reference, blob):
        scope = "repository:%s:pull,push" % repo
        _, h, _ = self.request("PUT", "/v2/%s/manifests/%s" % (repo, reference), data=blob.data,
                               headers={"Content-Type": blob.media_type}, scope=scope, ok=(201,))
        got = h.get("Docker-Content-Digest")
        if got and got != blob.digest:
            raise RegistryError(201, "registry stored %s as %s" % (blob.digest, got))
        return blob.digest

    def get_manifest(self, repo, reference, accept=MANIFEST_TYPES):
        scope = "repository:%s:pull" % repo
        _, h, body = self.request("GET", "/v2/%s/manifests/%s" % (repo, reference),
                                  headers={"Accept": ", ".join(accept)}, scope=scope)
        return h.get("Content-Type"), h.get("Docker-Content-Digest"), body

    def get_blob(self, repo, digest, range_=None):
        scope = "repository:%s:pull" % repo
        headers = {"Range": range_} if range_ else {}
        _, _, body = self.request("GET", "/v2/%s/blobs/%s" % (repo, digest), headers=headers,
                                  scope=scope, ok=(200, 206))
        return body

    def delete_manifest(self, repo, digest):
        scope = "repository:%s:pull,push,delete" % repo
        self.request("DELETE", "/v2/%s/manifests/%s" % (repo, digest), scope=scope, ok=(202, 404))

    def push(self, repo, tag, obj):
        """Push an Image or an Index (its images first, by digest) and tag it (tag may be
        None: pushed by digest only). Returns the top manifest digest."""
        if isinstance(obj, Index):
            for im in obj.images:
                self.push(repo, None, im)
        else:
            for b in obj.blobs():
                self.push_blob(repo, b)
        self.put_manifest(repo, obj.manifest.digest, obj.manifest)
        if tag:
            self.put_manifest(repo, tag, obj.manifest)
        return obj.manifest.digest

    def pull_check(self, repo, reference):
        """Pull a whole image (any platform of an index: the native one) and verify every
        digest; returns the Image-level manifest JSON. For infrastructure self-tests."""
        ct, dg, body = self.get_manifest(repo, reference)
        if dg and sha256(body) != dg:
            raise RegistryError(200, "manifest digest mismatch")
        m = json.loads(body)
        if ct in (OCI_INDEX, DOCKER_LIST):
            arch, variant = goarch()
            for d in m["manifests"]:
                p = d.get("platform", {})
                if p.get("architecture") == arch and p.get("os") == "linux":
                    return self.pull_check(repo, d["digest"])
            raise RegistryError(404, "no %s entry" % arch)
        for d in [m["config"]] + m["layers"]:
            data = self.get_blob(repo, d["digest"])
            if sha256(data) != d["digest"] or len(data) != d["size"]:
                raise RegistryError(200, "blob %s mismatch" % d["digest"])
        return m


def push(base, repo, tag, obj, username=None, password=None, token=None, ca_file=None):
    """Push an Image or Index to base ("http://127.0.0.1:P") as repo:tag."""
    return RegistryClient(base, username, password, token, ca_file).push(repo, tag, obj)


# --------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------

def busybox_tar(extra=None):
    """The base layer: /bin/busybox + applet symlinks, /etc/passwd (root, app=1000),
    /etc/group, /tmp (1777), /root, /home/app. extra(tb) may add entries."""
    tb = TarBuilder()
    for d, mode in (("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755),
                    ("proc", 0o555), ("root", 0o700), ("sys", 0o555), ("tmp", 0o1777),
                    ("usr", 0o755), ("usr/bin", 0o755), ("var", 0o755), ("var/tmp", 0o1777)):
        tb.dir(d, mode)
    tb.dir("home/app", 0o755, uid=1000, gid=1000)
    tb.file_from("bin/busybox", BUSYBOX, mode=0o755)
    for a in BUSYBOX_APPLETS:
        tb.symlink("bin/" + a, "busybox")
    tb.file("etc/passwd", PASSWD)
    tb.file("etc/group", GROUP)
    tb.file("etc/hostname", "tinycri-test\n")
    tb.file("etc/tinycri-image", "busybox\n")
    if extra:
        extra(tb)
    return tb.bytes()


_cache = {}


def _cached(key, fn):
    if key not in _cache:
        _cache[key] = fn()
    return _cache[key]


def busybox_layer(compression="gzip"):
    return _cached(("busybox-layer", compression), lambda: Layer(busybox_tar(), compression))


def busybox_image(docker=False, **config):
    """A single-layer busybox image (OCI, or Docker schema2 with docker=True)."""
    return Image([busybox_layer()], docker=docker, **config)


def user_uid_image():
    """Config User "1000": ImageStatus must give uid.value 1000."""
    return busybox_image(User="1000", Labels={"tinycri.test": "user-uid"})


def user_name_image():
    """Config User "app": ImageStatus must give username "app"."""
    return busybox_image(User="app", Labels={"tinycri.test": "user-name"})


def full_config_image():
    """Every config field tinycri may use."""
    return busybox_image(User="1000:1000", WorkingDir="/home/app", Entrypoint=["/bin/sh", "-c"],
                         Cmd=["echo hello"], Env=[PATH_ENV, "GREETING=hello"],
                         Volumes={"/data": {}}, StopSignal="SIGQUIT",
                         Labels={"tinycri.test": "full-config"},
                         ExposedPorts={"8080/tcp": {}})


def volume_content_image():
    """VOLUMEs over directories with content, as many images have them:
      /srv/data (0750, 1000:1000): hello.txt (0640, 1000:1000), sub/deep.txt, link -> hello.txt
      /var/lib/app, where /var/lib is a symlink to /../../opt/lib (resolved inside the image):
        /opt/lib/app/state.txt
      /empty/vol: nothing in the image
    A runtime must show the image's content in each volume (containerd does)."""
    def build():
        tb = TarBuilder().dir("srv").dir("srv/data", 0o750, uid=1000, gid=1000) \
            .file("srv/data/hello.txt", "seeded from the image\n", 0o640, uid=1000, gid=1000) \
            .dir("srv/data/sub", 0o700, uid=1000, gid=1000) \
            .file("srv/data/sub/deep.txt", "deep\n", uid=1000, gid=1000) \
            .symlink("srv/data/link", "hello.txt") \
            .dir("opt").dir("opt/lib").dir("opt/lib/app") \
            .file("opt/lib/app/state.txt", "state\n") \
            .symlink("var/lib", "/../../opt/lib")
        return Image([busybox_layer(), Layer(tb)], Cmd=["sleep", "3600"],
                     Volumes={"/srv/data": {}, "/var/lib/app": {}, "/empty/vol": {}},
                     Labels={"tinycri.test": "volume-content"})
    return _cached("volume-content", build)


def volume_over_file_image():
    """busybox with a VOLUME where the image has a file (/etc/tinycri-image): refused."""
    return busybox_image(Cmd=["sleep", "3600"], Volumes={"/etc/tinycri-image": {}},
                         Labels={"tinycri.test": "volume-over-file"})


WHITEOUT_DELETED = "data/a.txt"   # whited out by layer 2 (.wh.a.txt)
WHITEOUT_OPAQUE = "opq"           # made opaque by layer 2 (.wh..wh..opq)


def whiteout_image():
    """Two layers on top of busybox:
      layer 2: data/a.txt, data/b.txt, opq/x, opq/y
      layer 3: data/.wh.a.txt (delete data/a.txt), opq/.wh..wh..opq + opq/new
    Unpacked (overlayfs form) layer 3 must hold data/a.txt as a 0/0 char device,
    opq with trusted.overlay.opaque=y, opq/new, and no .wh.* entries."""
    def build():
        l2 = TarBuilder().dir("data").file("data/a.txt", "a\n").file("data/b.txt", "b\n") \
            .dir("opq").file("opq/x", "x\n").file("opq/y", "y\n")
        l3 = TarBuilder().dir("data").whiteout("data/a.txt").dir("opq").opaque("opq") \
            .file("opq/new", "new\n")
        return Image([busybox_layer(), Layer(l2), Layer(l3)], Labels={"tinycri.test": "whiteout"})
    return _cached("whiteout", build)


def zstd_image():
    """busybox with its layer zstd-compressed, plus a small second zstd layer."""
    def build():
        l2 = TarBuilder().dir("zstd").file("zstd/marker", "zstd layer\n")
        return Image([busybox_layer("zstd"), Layer(l2, "zstd")], Labels={"tinycri.test": "zstd"})
    return _cached("zstd", build)


def uncompressed_image():
    return _cached("plain", lambda: Image([busybox_layer(None)], Labels={"tinycri.test": "plain"}))


def fake_platform_image(arch, variant=None, os_name="linux", docker=False):
    """A tiny image claiming another platform (no runnable binary: it is never run)."""
    name = "/".join(x for x in (os_name, arch, variant) if x)
    tb = TarBuilder().dir("etc").file("etc/tinycri-image", "fake %s\n" % name)
    return Image([Layer(tb)], arch=arch, variant=variant, os_name=os_name, docker=docker,
                 Labels={"tinycri.test": "fake " + name})


FAKE_PLATFORMS = (("arm64", "v8"), ("arm", "v7"), ("amd64", None))


def multiarch_index(docker=False, with_windows=False):
    """Index with linux/amd64 (the real busybox on amd64 machines) + linux/arm64 +
    linux/arm/v7, the native entry NOT first; with_windows adds a windows/<native
    arch> entry first of all (a daemon must match the os too)."""
    def build():
        arch, variant = goarch()
        images = []
        if with_windows:
            images.append(fake_platform_image(arch, variant, "windows", docker))
        fakes = [fake_platform_image(a, v, docker=docker) for a, v in FAKE_PLATFORMS if a != arch]
        images += fakes[:1] + [busybox_image(docker=docker, Labels={"tinycri.test": "multiarch"})] \
            + fakes[1:]
        return Index(images, docker=docker)
    return _cached(("multiarch", docker, with_windows), build)


def multilayer_image(layers=6, layer_size=256 * 1024, seed=1, compression="gzip"):
    """busybox + `layers` layers of incompressible (pseudo-random, seeded) data.

    multilayer_image(layers=5, layer_size=20 * MiB) is the ~100 MiB benchmark image
    (not pushed by the normal tests)."""
    def build():
        import random
        rnd = random.Random(seed)
        ls = [busybox_layer(compression)]
        for i in range(layers):
            tb = TarBuilder().dir("data%d" % i)
            tb.file("data%d/blob.bin" % i, rnd.randbytes(layer_size))
            ls.append(Layer(tb, compression, gzip_level=1))
        return Image(ls, Labels={"tinycri.test": "multilayer-%dx%d" % (layers, layer_size)})
    return _cached(("multilayer", layers, layer_size, seed, compression), build)


def big_image(total_mib=100, layers=5, seed=7):
    """The ~100 MiB benchmark image: busybox + `layers` random layers."""
    return multilayer_image(layers=layers, layer_size=(total_mib << 20) // layers, seed=seed)


def diffid_mismatch_image():
    """A manifest whose layer blob is real but whose config diff_id is wrong (the
    registry cannot catch this; the daemon must, when it hashes the unpacked tar)."""
    def build():
        layer = Layer(TarBuilder().dir("etc").file("etc/mismatch", "the real content\n"))
        wrong = sha256(b"not the tar of this layer")
        return Image([layer], diff_ids=[wrong], Labels={"tinycri.test": "diffid-mismatch"})
    return _cached("diffid-mismatch", build)


def malicious_cases(tag):
    """{name: (Image, [paths that must not exist afterwards])} for unsafe layer tars.

    Relative paths in the list are names to look for anywhere under the daemon's
    temporary directory; absolute ones are host paths. tag makes them unique. Before
    the pull, create what malicious_targets(tag) names (so that a naive extractor
    really could write through the symlinks), and afterwards check that the victim
    file of the hardlinks (and /etc/passwd) kept their link count."""
    out = {}
    base = "/tmp/tc-evil-" + tag

    def img(name, build):
        tb = TarBuilder()
        build(tb)
        return Image([Layer(tb)], Labels={"tinycri.test": "malicious-" + name})

    out["dotdot"] = (img("dotdot", lambda tb: tb.file("../evil-%s" % tag, "evil\n")),
                     ["evil-%s" % tag])
    out["abs"] = (img("abs", lambda tb: tb.file(base + "-abs", "evil\n")), [base + "-abs"])
    out["dotdot-nested"] = (img("dotdot-nested", lambda tb: tb.dir("a").file(
        "a/../../evil-nested-%s" % tag, "evil\n")), ["evil-nested-%s" % tag])
    out["symlink-abs"] = (img("symlink-abs", lambda tb: tb.symlink("link", base + "-dir")
                              .file("link/evil", "evil\n")), [base + "-dir/evil"])
    out["symlink-rel"] = (img("symlink-rel", lambda tb: tb.dir("d").symlink(
        "d/link", "../../../../../../../../.." + base + "-dir")
        .file("d/link/evil-rel", "evil\n")), [base + "-dir/evil-rel"])
    out["hardlink-rel"] = (img("hardlink-rel", lambda tb: tb.hardlink("hl", "../../etc/passwd")),
                           [])
    out["hardlink-abs"] = (img("hardlink-abs", lambda tb: tb.hardlink("hl", base + "-victim")), [])
    return out


def malicious_targets(tag):
    """What a malicious-tar test prepares: the directory symlinks point at (exists,
    empty) and the victim file of the absolute hardlink (exists, nlink 1)."""
    base = "/tmp/tc-evil-" + tag
    return {"dir": base + "-dir", "victim": base + "-victim"}


# --------------------------------------------------------------------------
# Archives for the import directory
# --------------------------------------------------------------------------

def _tar_of(files):
    """files: [(name, bytes)] -> a tar (dirs implied)."""
    tb = TarBuilder()
    seen = set()
    for name, data in files:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in seen:
                seen.add(d)
                tb.dir(d)
        tb.file(name, data)
    return tb.bytes()


def docker_save_archive(image, repo_tags):
    """`docker save` format: manifest.json, <config-hex>.json, <layer-hex>/layer.tar
    (uncompressed layers), plus the legacy `repositories` file."""
    files = [(image.config.hex + ".json", image.config.data)]
    layer_paths = []
    for l in image.layers:
        p = "%s/layer.tar" % l.diff_id.split(":", 1)[1]
        layer_paths.append(p)
        files.append((p, l.tar))
    files.append(("manifest.json", json.dumps(
        [{"Config": image.config.hex + ".json", "RepoTags": list(repo_tags),
          "Layers": layer_paths}]).encode()))
    repos = {}
    for t in repo_tags:
        name, _, tag = t.rpartition(":")
        repos.setdefault(name, {})[tag] = layer_paths[-1].split("/")[0]
    files.append(("repositories", json.dumps(repos).encode()))
    return _tar_of(files)


def oci_layout_archive(image, ref_name, tag_only_ref=True):
    """An OCI image layout as a tar: oci-layout, index.json, blobs/sha256/<hex>.

    The index entry carries io.containerd.image.name=<ref_name> (the full name) and
    org.opencontainers.image.ref.name=<its tag> (what containerd's export writes);
    with tag_only_ref=False ref.name is the full name too."""
    files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    for b in image.blobs() + [image.manifest]:
        files.append(("blobs/sha256/" + b.hex, b.data))
    tag = ref_name.rpartition(":")[2] if tag_only_ref else ref_name
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [image.manifest.descriptor(annotations={
            "io.containerd.image.name": ref_name,
            "org.opencontainers.image.ref.name": tag,
        })],
    }
    files.append(("index.json", canonical_json(index)))
    return _tar_of(files)
