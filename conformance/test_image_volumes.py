# SPDX-License-Identifier: Apache-2.0
"""Image-defined VOLUMEs seeded with the image's content, as containerd does by default,
seen from inside real containers (runc, the `ctrs` fixture of test_containers.py).

The volume-content image (imagebuild.volume_content_image) declares /srv/data over a
directory with files, a subdirectory and a symlink (owned by 1000:1000), /var/lib/app
where /var/lib is a symlink inside the image, and /empty/vol where the image has nothing.
Each container gets its own copy: it sees the image's files, can write, and its writes go
neither into the image's layers nor to another container. Needs root.
"""
import os

import grpc
import pytest

from test_containers import ctrs, pod_network  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

SLEEP = ["sleep", "3600"]


def files_under(root):
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def test_volumes_start_with_the_images_content(ctrs, pushed_images):
    ref = pushed_images.ref("volume-content")
    ctrs.pull("volume-content")
    pod = ctrs.run_pod("vols")
    app = ctrs.run(pod, "app", image=ref, command=SLEEP,
                   run_as_user=ctrs.pb.Int64Value(value=1000))

    # The image's content, with its owners, modes and symlinks.
    assert ctrs.out(app, "cat", "/srv/data/hello.txt") == "seeded from the image\n"
    assert ctrs.out(app, "cat", "/srv/data/sub/deep.txt") == "deep\n"
    assert ctrs.out(app, "readlink", "/srv/data/link") == "hello.txt\n"
    assert ctrs.out(app, "cat", "/srv/data/link") == "seeded from the image\n"
    modes = ctrs.out(app, "stat", "-c", "%n %u:%g %a", "/srv/data", "/srv/data/hello.txt",
                     "/srv/data/sub").splitlines()
    assert modes == ["/srv/data 1000:1000 750", "/srv/data/hello.txt 1000:1000 640",
                     "/srv/data/sub 1000:1000 700"]
    # A volume under a symlink of the image: resolved inside the image, seeded from there.
    assert ctrs.out(app, "cat", "/var/lib/app/state.txt") == "state\n"
    assert ctrs.out(app, "ls", "-A", "/empty/vol") == ""
    # Each is a volume (its own mount), not the rootfs.
    mounts = [line.split()[4] for line in
              ctrs.out(app, "cat", "/proc/self/mountinfo").splitlines()]
    assert "/srv/data" in mounts and "/opt/lib/app" in mounts and "/empty/vol" in mounts

    # The container can write there (as user 1000: the directory is its own).
    assert ctrs.exec(app, "sh", "-c", "echo mine > /srv/data/new.txt && "
                     "echo changed > /srv/data/hello.txt").exit_code == 0
    assert ctrs.out(app, "cat", "/srv/data/hello.txt") == "changed\n"

    # Writes stay in this container's volume: not in any layer, not in another container.
    layers = os.path.join(ctrs.d.root, "layers")
    for layer in os.listdir(layers):
        data = os.path.join(layers, layer, "srv", "data")
        if os.path.isdir(data):
            assert files_under(data) == {"hello.txt", "link", "sub/deep.txt"}, layer
            with open(os.path.join(data, "hello.txt")) as f:
                assert f.read() == "seeded from the image\n"
    other = ctrs.run(pod, "other", image=ref, command=SLEEP)
    assert ctrs.out(other, "cat", "/srv/data/hello.txt") == "seeded from the image\n"
    assert ctrs.exec(other, "test", "-e", "/srv/data/new.txt").exit_code == 1
    # Nor in the container's own rootfs: the overlay's upper layer has no /srv/data.
    upper = os.path.join(ctrs.d.root, "containers", app, "upper")
    assert not os.path.exists(os.path.join(upper, "srv", "data"))


def test_a_cri_mount_replaces_the_volume(ctrs, pushed_images, tmp_path):
    """A CRI mount at a volume's path wins: no copy, the host directory as it is."""
    ref = pushed_images.ref("volume-content")
    ctrs.pull("volume-content")
    host = tmp_path / "hostdata"
    host.mkdir()
    (host / "from-host").write_text("host\n")
    pod = ctrs.run_pod("volmount")
    cid = ctrs.run(pod, "c", image=ref, command=SLEEP,
                   mounts=[{"container_path": "/srv/data", "host_path": str(host)}])
    assert ctrs.out(cid, "ls", "/srv/data") == "from-host\n"
    assert sorted(os.listdir(host)) == ["from-host"]


def test_a_volume_over_a_file_is_refused(ctrs, pushed_images):
    """The image declares a VOLUME where it has a file: no directory to seed or mount."""
    ref = pushed_images.ref("volume-over-file")
    ctrs.pull("volume-over-file")
    pod = ctrs.run_pod("volfile")
    e = ctrs.create_fails(pod, "c", image=ref, command=SLEEP)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert "image volume /etc/tinycri-image" in e.details(), e.details()
    assert list(ctrs.list()) == []
