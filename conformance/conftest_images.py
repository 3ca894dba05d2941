# SPDX-License-Identifier: Apache-2.0
"""pytest fixtures for the image tests (loaded by conftest.py's pytest_plugins).

Debian packages: docker-registry, busybox-static, zstd, python3-cryptography,
python3-jwt, python3-bcrypt.

Session-scoped (started on first use, stopped at the end of the session):
  image_ca        registries.TestCA: .ca_file
  plain_registry  registries.Registry, plain HTTP
  tls_registry    HTTPS with a certificate from image_ca; .ca_file
  basic_registry  htpasswd Basic auth; .username, .password
  token_registry  token auth; .username, .password, .token_requests (count),
                  .token_server (.mint(scopes) -> token, .refresh_token)
  pushed_images   the standard test images pushed once to plain_registry
                  (PushedImages: .registry, .host, [name] -> Image/Index,
                  .ref(name, tag="latest", host=None), .digest_ref(name, host=None))
Every Registry has .host ("127.0.0.1:PORT"), .url, .dir, .log_path, .push(repo, tag,
image), .ensure(repo, tag, image) (push once), .client(), .access_log(),
.blob_gets(digest).

Function-scoped:
  registry_proxy  registries.RegistryProxy in front of plain_registry (new per test)
  broken_mirror   factory: broken_mirror(status) -> a RegistryProxy answering every
                  request with status; broken_mirror(None) -> a ClosedPort
"""
import os
import shutil
import tempfile
import uuid

import pytest

import imagebuild as ib
import registries as rg

# Name of each standard image in the plain registry -> builder.
STANDARD_IMAGES = {
    "busybox": lambda: ib.busybox_image(),
    "busybox-docker": lambda: ib.busybox_image(docker=True, Labels={"tinycri.test": "docker"}),
    "user-uid": ib.user_uid_image,
    "user-name": ib.user_name_image,
    "full-config": ib.full_config_image,
    "volume-content": ib.volume_content_image,
    "volume-over-file": ib.volume_over_file_image,
    "whiteout": ib.whiteout_image,
    "zstd": ib.zstd_image,
    "uncompressed": ib.uncompressed_image,
    "multiarch": lambda: ib.multiarch_index(),
    "multiarch-docker": lambda: ib.multiarch_index(docker=True),
    "multiarch-os": lambda: ib.multiarch_index(with_windows=True),
    "multilayer": lambda: ib.multilayer_image(),
    "diffid-mismatch": ib.diffid_mismatch_image,
}


# What the image machinery needs: (check, Debian package).
NEEDS = (
    (lambda: os.access(rg.DOCKER_REGISTRY, os.X_OK), "docker-registry"),
    (lambda: os.path.isfile(ib.BUSYBOX), "busybox-static"),
    (lambda: shutil.which("zstd"), "zstd"),
    (lambda: _importable("cryptography"), "python3-cryptography"),
    (lambda: _importable("jwt"), "python3-jwt"),
    (lambda: _importable("bcrypt"), "python3-bcrypt"),
)


def _importable(mod):
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


def check_image_deps():
    """Fail (never skip) with the Debian packages to install when something is missing."""
    missing = [pkg for ok, pkg in NEEDS if not ok()]
    if missing:
        pytest.fail("the image tests need these Debian packages: apt-get install %s"
                    % " ".join(missing), pytrace=False)


@pytest.fixture(scope="session")
def image_ca():
    check_image_deps()
    d = tempfile.mkdtemp(prefix="tc-ca-", dir="/tmp")
    yield rg.TestCA(d)
    shutil.rmtree(d, ignore_errors=True)


def _registry(kind, ca):
    r = rg.Registry(kind, ca=ca)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture(scope="session")
def plain_registry(image_ca):
    yield from _registry("plain", image_ca)


@pytest.fixture(scope="session")
def tls_registry(image_ca):
    yield from _registry("tls", image_ca)


@pytest.fixture(scope="session")
def basic_registry(image_ca):
    yield from _registry("basic", image_ca)


@pytest.fixture(scope="session")
def token_registry(image_ca):
    yield from _registry("token", image_ca)


class PushedImages:
    """The standard images in a registry; names as in STANDARD_IMAGES, each tagged
    "latest", plus "malicious-<case>" images (see .malicious)."""

    def __init__(self, registry):
        self.registry = registry
        self.host = registry.host
        self.images = {}
        # Unique per session: the outside paths the malicious tars aim at.
        self.tag = uuid.uuid4().hex[:10]
        self.malicious = ib.malicious_cases(self.tag)
        self.targets = ib.malicious_targets(self.tag)
        for name, build in STANDARD_IMAGES.items():
            self.images[name] = build()
            registry.ensure(name, "latest", self.images[name])
        for case, (img, _) in self.malicious.items():
            self.images["malicious-" + case] = img
            registry.ensure("malicious-" + case, "latest", img)

    def __getitem__(self, name):
        return self.images[name]

    def ref(self, name, tag="latest", host=None):
        return "%s/%s:%s" % (host or self.host, name, tag)

    def digest_ref(self, name, host=None):
        return "%s/%s@%s" % (host or self.host, name, self.images[name].manifest.digest)

    def cleanup_targets(self):
        for p in self.targets.values():
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.lexists(p):
                os.unlink(p)


@pytest.fixture(scope="session")
def pushed_images(plain_registry):
    p = PushedImages(plain_registry)
    yield p
    p.cleanup_targets()


@pytest.fixture
def registry_proxy(plain_registry):
    p = rg.RegistryProxy(plain_registry.host)
    yield p
    p.close()


@pytest.fixture
def broken_mirror():
    made = []

    def make(status=404):
        m = rg.RegistryProxy(None, fail_status=status) if status else rg.closed_port()
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()
