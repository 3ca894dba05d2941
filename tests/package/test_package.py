# SPDX-License-Identifier: Apache-2.0
"""The Debian package as a user gets it ($TINYCRI_DEB, built by scripts/package).

It is installed with dpkg into a throwaway root (dpkg --root; its maintainer scripts run
chrooted there with only a static shell, so they touch nothing on this machine and find
no systemd, as in a container), and checked: its control fields, every file with its
mode, the conffile (registered, kept when edited, removed on purge only), the unit
(systemd-analyze verify finds the binary it starts and the man pages it names), the man
pages (man renders them), and that the installed tinycrid finds the installed keeper.
Run by scripts/test: TINYCRI_DEB=... /usr/bin/python3 -m pytest tests/package. Needs root."""
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEB = os.environ.get("TINYCRI_DEB", "")

pytestmark = [
    pytest.mark.skipif(not DEB, reason="TINYCRI_DEB is not set (scripts/test sets it)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="dpkg --root and mount namespaces need root"),
]

FILES = {
    # path: mode
    "/usr/sbin/tinycrid": 0o755,
    "/usr/libexec/tinycri/tinycri-keeper": 0o755,
    "/etc/tinycri/tinycri.conf": 0o644,
    "/lib/systemd/system/tinycrid.service": 0o644,
    "/usr/share/man/man8/tinycrid.8.gz": 0o644,
    "/usr/share/man/man5/tinycri.conf.5.gz": 0o644,
    "/usr/share/doc/tinycri/copyright": 0o644,
    "/usr/share/doc/tinycri/changelog.gz": 0o644,
    "/usr/share/doc/tinycri/README.md.gz": 0o644,
    "/usr/share/doc/tinycri/examples/crictl.yaml": 0o644,
    "/usr/share/doc/tinycri/examples/kubelet-config.yaml": 0o644,
    "/usr/share/lintian/overrides/tinycri": 0o644,
}
CONFFILE = "/etc/tinycri/tinycri.conf"


def sh(*argv, check=True, **kw):
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, **kw)


def changelog_version():
    return sh("dpkg-parsechangelog", "-l", os.path.join(REPO, "debian", "changelog"),
              "-S", "Version").stdout.strip()


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


class Root:
    """A throwaway root with an empty dpkg database and a static shell for the scripts."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="tc-deb-root-", dir="/tmp")
        for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "bin"):
            os.makedirs(os.path.join(self.path, d))
        for f in ("status", "available"):
            open(os.path.join(self.path, "var/lib/dpkg", f), "w").close()
        shutil.copy("/bin/busybox", os.path.join(self.path, "bin/sh"))

    def p(self, path):
        return os.path.join(self.path, path.lstrip("/"))

    def dpkg(self, *args):
        # Dependencies (libc, the runtimes, ...) are on the host, not in the root.
        return sh("dpkg", "--root=" + self.path, "--force-depends", *args)

    def status(self):
        r = sh("dpkg-query", "--root=" + self.path, "-s", "tinycri", check=False)
        return r.stdout if r.returncode == 0 else None

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


@pytest.fixture(scope="module")
def installed():
    root = Root()
    root.dpkg("-i", DEB)
    yield root
    root.remove()


def test_file_name_and_control():
    version = changelog_version()
    arch = sh("dpkg", "--print-architecture").stdout.strip()
    assert os.path.basename(DEB) == "tinycri_%s_%s.deb" % (version, arch)
    f = {k: sh("dpkg-deb", "-f", DEB, k).stdout.strip()
         for k in ("Package", "Version", "Architecture", "Depends", "Recommends", "Built-Using")}
    assert (f["Package"], f["Version"], f["Architecture"]) == ("tinycri", version, arch)
    depends = [d.strip() for d in f["Depends"].split(",")]
    assert "crun | runc" in depends
    # from shlibs: the libraries tinycrid links
    for lib in ("libc6", "libevent-core-2.1-7", "libnghttp2-14", "libprotobuf-c1", "libinih1",
                "libjansson4"):
        assert any(d.split()[0] == lib for d in depends), "%s missing from %s" % (lib, depends)
    # dlopen()ed by src/image/xferlib.c, so no shlibs entry: named by hand
    assert any(d.split()[0] == "libarchive13" for d in depends)
    assert any(d.split()[0] == "libcurl4" for d in depends)
    assert any(d.split()[0] == "libssl3" for d in depends)
    assert f["Recommends"] == "containernetworking-plugins"
    assert re.fullmatch(r"glibc \(= \S+\)", f["Built-Using"]), f["Built-Using"]


def test_files_and_modes(installed):
    listed = sh("dpkg-query", "--root=" + installed.path, "-L", "tinycri").stdout.split()
    files = sorted(p for p in listed if os.path.isfile(installed.p(p)))
    assert files == sorted(FILES)
    for path, mode in FILES.items():
        st = os.stat(installed.p(path))
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (mode, 0, 0), path
    with open(installed.p(CONFFILE), "rb") as a, open(os.path.join(REPO, "etc", "tinycri.conf"),
                                                      "rb") as b:
        assert a.read() == b.read()


def test_conffile_registered_kept_and_purged():
    ctl = tempfile.mkdtemp(prefix="tc-deb-ctl-", dir="/tmp")
    root = Root()
    try:
        sh("dpkg-deb", "-e", DEB, ctl)
        with open(os.path.join(ctl, "conffiles")) as f:
            assert f.read().split() == [CONFFILE]
        root.dpkg("-i", DEB)
        status = root.status()
        assert "Status: install ok installed" in status
        assert " %s %s" % (CONFFILE, md5(os.path.join(REPO, "etc", "tinycri.conf"))) in status
        # an edit survives reinstalling (as it would an upgrade with the same conffile)
        with open(root.p(CONFFILE), "a") as f:
            f.write("\n# edited by the admin\n")
        edited = md5(root.p(CONFFILE))
        root.dpkg("-i", DEB)
        assert md5(root.p(CONFFILE)) == edited
        # remove keeps configuration, purge does not
        root.dpkg("-r", "tinycri")
        assert os.path.exists(root.p(CONFFILE))
        assert not os.path.exists(root.p("/usr/sbin/tinycrid"))
        root.dpkg("-P", "tinycri")
        assert not os.path.exists(root.p(CONFFILE))
        assert root.status() is None
    finally:
        root.remove()
        shutil.rmtree(ctl, ignore_errors=True)


def read_unit(installed):
    with open(installed.p("/lib/systemd/system/tinycrid.service")) as f:
        return f.read()


def test_unit_contents(installed):
    unit = read_unit(installed)
    for line in ("Type=notify", "ExecStart=/usr/sbin/tinycrid --config /etc/tinycri/tinycri.conf",
                 "KillMode=process", "Delegate=yes",
                 "Documentation=man:tinycrid(8) man:tinycri.conf(5)",
                 "WantedBy=multi-user.target"):
        assert line in unit.splitlines(), line
    assert not re.search(r"https?://|example\.|/usr/local", unit)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_unit_loads(installed):
    """systemd-analyze verify, with the root's /usr/sbin seen at /usr/sbin (in a private
    mount namespace) and its man pages on MANPATH: it checks the unit's syntax, that
    ExecStart is executable and that the Documentation= pages exist. Any output is a
    problem (it exits 0 after a syntax warning)."""
    unit = installed.p("/lib/systemd/system/tinycrid.service")
    script = 'mount --bind "$1/usr/sbin" /usr/sbin\nexec systemd-analyze verify "$2"'

    def verify(unit_path, manpath):
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script, "sh",
             installed.path, unit_path],
            capture_output=True, text=True, cwd="/", env=dict(os.environ, MANPATH=manpath))
    r = verify(unit, installed.p("/usr/share/man"))
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stderr
    # and the check can fail: without the man pages, or with a bad Type=
    r = verify(unit, "/nonexistent")
    assert "man tinycrid(8)" in r.stderr
    bad = installed.p("/tmp/bad.service")
    os.makedirs(os.path.dirname(bad), exist_ok=True)
    with open(bad, "w") as f:
        f.write(read_unit(installed).replace("Type=notify", "Type=notifi"))
    r = verify(bad, installed.p("/usr/share/man"))
    assert "Failed to parse service type" in r.stderr


@pytest.mark.parametrize("section,name,title", [("8", "tinycrid", "TINYCRID(8)"),
                                                ("5", "tinycri.conf", "TINYCRI.CONF(5)")])
def test_man_pages_render(installed, section, name, title):
    env = dict(os.environ, MANPATH=installed.p("/usr/share/man"), MANPAGER="cat",
               MANWIDTH="80", LC_ALL="C.UTF-8")
    where = sh("man", "-w", section, name, env=env).stdout.strip()
    assert where == installed.p("/usr/share/man/man%s/%s.%s.gz" % (section, name, section))
    r = sh("man", "--warnings=all", section, name, env=env)
    assert not r.stderr.strip(), r.stderr
    assert r.stdout.startswith(title)
    assert "@" + "sbindir@" not in r.stdout and "/usr/local" not in r.stdout
    if name == "tinycrid":
        for opt in ("--check-config", "NOTIFY_SOCKET", "/etc/tinycri/tinycri.conf",
                    "/usr/libexec/tinycri/tinycri-keeper", "EXIT STATUS"):
            assert opt in r.stdout, opt


def test_installed_daemon_finds_the_installed_keeper(installed, tmp_path):
    """The packaged tinycrid runs, and looks for tinycri-keeper in /usr/libexec/tinycri
    (not beside itself): --check-config names that path when the keeper is not there, and
    is content once the package's /usr/libexec/tinycri is seen there."""
    daemon = installed.p("/usr/sbin/tinycrid")
    assert changelog_version() in sh(daemon, "--version").stdout
    conf = tmp_path / "tinycri.conf"
    conf.write_text("[server]\nroot_dir = %s/root\nstate_dir = %s/state\nsocket = %s/s/sock\n"
                    % (tmp_path, tmp_path, tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "TINYCRI_KEEPER"}

    def check(mounts):
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-ec",
             mounts + '\nexec "$@"', "sh", daemon, "--config", str(conf), "--check-config"],
            capture_output=True, text=True, env=env)
    # /usr/libexec without tinycri (whatever this machine has installed)
    r = check("mount -t tmpfs none /usr/libexec")
    assert any(l.startswith("keeper: /usr/libexec/tinycri/tinycri-keeper: No such file")
               for l in r.stdout.splitlines()), r.stdout
    r = check('mount -t tmpfs none /usr/libexec\nmkdir /usr/libexec/tinycri\n'
              'mount --bind "%s" /usr/libexec/tinycri' % installed.p("/usr/libexec/tinycri"))
    assert not [l for l in r.stdout.splitlines() if l.startswith("keeper:")], r.stdout
