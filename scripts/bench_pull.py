# SPDX-License-Identifier: Apache-2.0
"""Cold image pull benchmark: tinycrid against Debian's containerd (helper of scripts/bench-pull).

Run by scripts/bench-pull with /usr/bin/python3 (Debian's grpcio and grpc_tools).
Everything lives under --work, a directory the caller made and removes:

  gen/            Python stubs generated from proto/api.proto (as conformance/conftest.py
                  does), so the client speaks the schema the daemon was built from
  registry/       one plain-HTTP docker-registry on 127.0.0.1:<free port>
  tinycrid-N/     run N of tinycrid: config, root, state, socket, log
  containerd-N/   run N of containerd: config, root, state, socket, log
  pids            the PIDs of the processes started here that are still alive, so the
                  caller can stop them should this process die without cleaning up

The image (conformance/imagebuild.py big_image: busybox plus --layers layers of
random, incompressible data, gzip) is built and pushed once. Each run is cold: a
daemon started on an empty root, one PullImage over its CRI socket with the project's
grpcio client, the daemon stopped and its root removed. Dirty pages are written back
(sync) before each daemon starts, so no pull pays for an earlier one's writeback, and
runs alternate between the two runtimes so that drift in the machine's state hits
both alike. While a pull is in flight a thread reads /proc/<daemon>/status every
--interval seconds (RssAnon, VmRSS), and the memory of the daemon's direct children
(tinycrid's unpack children). After the reply, the size of the daemon's root shows
that both hold the blobs and the unpacked layers.
"""
import argparse
import configparser
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "conformance"))

import imagebuild as ib  # noqa: E402

MiB = 1 << 20
REPO_NAME = "bench/pull"
TAG = "latest"
DOCKER_REGISTRY = "/usr/bin/docker-registry"
DOWNLOADS = 3  # concurrent layer downloads: the default of both daemons, set explicitly
TINYCRID_MEM_TARGET_KIB = 4 * 1024
TIME_RATIO_TARGET = 0.8


class BenchError(Exception):
    pass


def say(*a):
    print(*a, flush=True)


def note(msg):
    print("bench-pull: " + msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Processes: started here, stopped by PID, recorded in <work>/pids meanwhile
# --------------------------------------------------------------------------

class Procs:
    def __init__(self, work):
        self.path = os.path.join(work, "pids")
        self.live = []

    def _write(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join("%d\n" % p.pid for p in self.live))
        os.replace(tmp, self.path)

    def start(self, argv, log_path):
        with open(log_path, "ab") as log:
            # Own session: a Ctrl-C on the terminal reaches this script, which then
            # stops the daemons in order instead of having them die mid-write.
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 close_fds=True, start_new_session=True, env=child_env())
        self.live.append(p)
        self._write()
        return p

    def stop(self, p, timeout=20.0):
        """SIGTERM, then SIGKILL after timeout; returns the exit status."""
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                note("pid %d did not exit %.0f s after SIGTERM; killing it" % (p.pid, timeout))
                p.kill()
                p.wait()
        if p in self.live:
            self.live.remove(p)
            self._write()
        return p.returncode

    def stop_all(self):
        for p in reversed(list(self.live)):
            self.stop(p, timeout=10.0)


def child_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
              "ALL_PROXY", "no_proxy", "NO_PROXY"):
        env.pop(k, None)
    return env


def unmount_under(path):
    """Lazily unmount everything mounted at or below path, deepest first."""
    prefix = os.path.realpath(path).rstrip("/") + "/"
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")  # \040 etc.
            if mp.startswith(prefix):
                mounts.append(mp)
    for mp in sorted(mounts, key=len, reverse=True):
        r = subprocess.run(["umount", "-l", mp], stderr=subprocess.PIPE)
        if r.returncode != 0:
            note("umount %s: %s" % (mp, r.stderr.decode(errors="replace").strip()))
    return len(mounts)


def remove_tree(path):
    unmount_under(path)
    shutil.rmtree(path, ignore_errors=True)


def disk_kib(path):
    """KiB allocated below path (hard links counted once), without crossing mounts."""
    seen, total = set(), 0
    dev = os.lstat(path).st_dev
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(top, name))
            except OSError:
                continue
            if st.st_dev != dev or (st.st_ino in seen):
                continue
            seen.add(st.st_ino)
            total += st.st_blocks * 512
        dirs[:] = [x for x in dirs if os.lstat(os.path.join(top, x)).st_dev == dev]
    return total // 1024


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def log_tail(path, n=20):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "(no log at %s)" % path
    return "--- last lines of %s ---\n%s" % (path, "\n".join(lines[-n:]))


# --------------------------------------------------------------------------
# gRPC stubs (generated at run time, as conformance/conftest.py does)
# --------------------------------------------------------------------------

def load_api(work):
    from grpc_tools import protoc  # python3-grpc-tools

    proto = os.path.join(REPO, "proto", "api.proto")
    gen = os.path.join(work, "gen")
    os.makedirs(gen, exist_ok=True)
    rc = protoc.main(["grpc_tools.protoc", "-I" + os.path.dirname(proto),
                      "--python_out=" + gen, "--grpc_python_out=" + gen, proto])
    if rc != 0:
        raise BenchError("grpc_tools.protoc failed on %s (status %d)" % (proto, rc))
    sys.path.insert(0, gen)
    import api_pb2  # noqa: E402
    import api_pb2_grpc  # noqa: E402
    return api_pb2, api_pb2_grpc


def channel(sock):
    import grpc
    return grpc.insecure_channel("unix:" + sock, options=[
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_receive_message_length", 64 * MiB),
        ("grpc.initial_reconnect_backoff_ms", 50),
        ("grpc.min_reconnect_backoff_ms", 50),
        ("grpc.max_reconnect_backoff_ms", 200),
    ])


# --------------------------------------------------------------------------
# The registry and the image
# --------------------------------------------------------------------------

def start_registry(procs, work):
    d = os.path.join(work, "registry")
    os.makedirs(d)
    cfg_path = os.path.join(d, "config.yml")
    log_path = os.path.join(d, "registry.log")
    last = ""
    for _ in range(5):
        port = free_port()
        url = "http://127.0.0.1:%d" % port
        cfg = {
            "version": "0.1",
            "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": os.path.join(d, "storage")},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": "127.0.0.1:%d" % port, "secret": secrets.token_hex(16)},
        }
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=2)  # JSON is YAML
        p = procs.start([DOCKER_REGISTRY, "serve", cfg_path], log_path)
        client = ib.RegistryClient(url, timeout=2)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and p.poll() is None:
            try:
                if client._raw("GET", url + "/v2/")[0] == 200:
                    return p, port
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        procs.stop(p)
        last = log_tail(log_path)
        if "address already in use" not in last:
            break
    raise BenchError("docker-registry did not start\n" + last)


# --------------------------------------------------------------------------
# Memory sampling
# --------------------------------------------------------------------------

def read_mem(pid):
    """(RssAnon, VmRSS) in KiB, or None when the process is gone."""
    anon = rss = 0
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    except (OSError, ValueError):
        return None
    return anon, rss


def children_of(pid):
    """PIDs whose parent is pid (the kernel here has no /proc/PID/task/TID/children)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(name))
    return out


class Sampler(threading.Thread):
    """Peak RssAnon/VmRSS of pid, and of the sum over its direct children."""

    def __init__(self, pid, interval):
        super().__init__(daemon=True, name="mem-sampler")
        self.pid, self.interval = pid, interval
        self.stopping = threading.Event()
        self.peak_anon = self.peak_rss = 0
        self.child_anon = self.child_rss = 0
        self.samples = 0

    def sample(self):
        m = read_mem(self.pid)
        if m is None:
            return
        self.peak_anon = max(self.peak_anon, m[0])
        self.peak_rss = max(self.peak_rss, m[1])
        ca = cr = 0
        for c in children_of(self.pid):
            cm = read_mem(c)
            if cm:
                ca += cm[0]
                cr += cm[1]
        self.child_anon = max(self.child_anon, ca)
        self.child_rss = max(self.child_rss, cr)
        self.samples += 1

    def run(self):
        while True:
            self.sample()
            if self.stopping.wait(self.interval):
                break

    def finish(self):
        self.stopping.set()
        self.join()
        self.sample()  # the state at the reply counts too


def containerd_config_head(d):
    """The part of a private containerd 1.6 config both benchmarks share: its own
    root, state, sockets and opt dir under d, no debug or metrics listener, and the
    snapshotters that cannot work here disabled. The CRI plugin section follows."""
    return """version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd-ttrpc.sock"

[debug]
  address = ""
  level = "warn"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

""".format(d=d)


# --------------------------------------------------------------------------
# The daemons
# --------------------------------------------------------------------------

class Target:
    name = None

    def __init__(self, bench, run):
        self.bench = bench
        self.dir = os.path.join(bench.work, "%s-%d" % (self.name, run))
        os.makedirs(self.dir, mode=0o700)
        self.log = os.path.join(self.dir, "daemon.log")
        self.proc = None

    def wait_ready(self, timeout):
        import grpc
        pb2, pb2_grpc = self.bench.api
        deadline = time.monotonic() + timeout
        last = "socket never appeared"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError("%s exited with status %d during start-up\n%s"
                                 % (self.name, self.proc.returncode, log_tail(self.log)))
            if os.path.exists(self.sock):
                ch = channel(self.sock)
                try:
                    pb2_grpc.RuntimeServiceStub(ch).Version(pb2.VersionRequest(version="v1"),
                                                            timeout=2)
                    return
                except grpc.RpcError as e:
                    last = "Version: %s %s" % (e.code(), e.details())
                finally:
                    ch.close()
            time.sleep(0.05)
        raise BenchError("%s did not answer Version within %.0f s (%s)\n%s"
                         % (self.name, timeout, last, log_tail(self.log)))

    def stop(self):
        rc = self.bench.procs.stop(self.proc)
        if rc != 0:
            note("%s exited with status %d after SIGTERM\n%s" % (self.name, rc,
                                                                 log_tail(self.log)))
        remove_tree(self.dir)


class Tinycrid(Target):
    name = "tinycrid"

    def state_dir(self):
        # Short, outside self.dir: /tmp/tcp.XXXXXX/s<run>.
        return os.path.join(self.bench.work, "s" + self.dir.rsplit("-", 1)[1])

    def start(self):
        self.sock = os.path.join(self.dir, "sock", "tinycri.sock")
        self.root = os.path.join(self.dir, "root")
        cni = os.path.join(self.dir, "cni")
        os.mkdir(cni)
        cp = configparser.ConfigParser(interpolation=None)
        cp.optionxform = str
        cp.read_dict({
            "server": {"socket": self.sock, "root_dir": self.root,
                       "state_dir": self.state_dir(), "log_level": "warn"},
            "cni": {"conf_dir": cni},
            "image": {"max_concurrent_downloads": str(DOWNLOADS)},
            "registry." + self.bench.host: {"insecure": "true"},
        })
        conf = os.path.join(self.dir, "tinycri.conf")
        with open(conf, "w") as f:
            cp.write(f)
        self.proc = self.bench.procs.start([self.bench.tinycrid, "--config", conf], self.log)
        self.wait_ready(10)


class Containerd(Target):
    name = "containerd"

    def start(self):
        d = self.dir
        self.sock = os.path.join(d, "containerd.sock")
        self.root = os.path.join(d, "root")
        for sub in ("root", "state", "opt", "cni-conf", "cni-bin"):
            os.mkdir(os.path.join(d, sub))
        host = self.bench.host
        conf = os.path.join(d, "config.toml")
        with open(conf, "w") as f:
            f.write(containerd_config_head(d) + """[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  disable_cgroup = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  max_concurrent_downloads = {downloads}
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = "{d}/cni-conf"
    bin_dir = "{d}/cni-bin"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{host}"]
    endpoint = ["http://{host}"]
""".format(d=d, host=host, downloads=DOWNLOADS))
        self.proc = self.bench.procs.start(["containerd", "--config", conf], self.log)
        self.wait_ready(30)


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.work = os.path.realpath(args.work)
        self.tinycrid = args.tinycrid
        self.procs = Procs(self.work)
        self.results = {"tinycrid": [], "containerd": []}

    def setup(self):
        self.api = load_api(self.work)
        t0 = time.monotonic()
        img = ib.big_image(total_mib=self.args.size_mib, layers=self.args.layers,
                           seed=self.args.seed)
        self.image = img
        self.layer_bytes = sum(l.blob.size for l in img.layers)
        self.pull_bytes = self.layer_bytes + img.config.size + img.manifest.size
        self.unpacked_bytes = sum(len(l.tar) for l in img.layers)
        built = time.monotonic() - t0
        self.registry, port = start_registry(self.procs, self.work)
        self.host = "127.0.0.1:%d" % port
        t1 = time.monotonic()
        ib.RegistryClient("http://" + self.host, timeout=300).push(REPO_NAME, TAG, img)
        self.ref = "%s/%s:%s" % (self.host, REPO_NAME, TAG)
        say("image:      %s  (%d layers, gzip; built in %.1f s, pushed in %.1f s)"
            % (self.ref, len(img.layers), built, time.monotonic() - t1))
        say("            %.1f MiB compressed (layers %.1f MiB), %.1f MiB of layer tars;"
            " id %s" % (self.pull_bytes / MiB, self.layer_bytes / MiB,
                        self.unpacked_bytes / MiB, img.id[:19]))
        say("            layer blobs MiB: %s" % " ".join("%.1f" % (l.blob.size / MiB)
                                                       for l in img.layers))

    def pull_once(self, cls, run):
        import grpc
        pb2, pb2_grpc = self.api
        t = cls(self, run)
        try:
            # Write back what earlier runs (and the push) left dirty, so that no pull
            # pays for another's writeback; then let start-up work finish.
            os.sync()
            t.start()
            time.sleep(self.args.settle)
            idle = read_mem(t.proc.pid)
            if idle is None:
                raise BenchError("%s is gone\n%s" % (t.name, log_tail(t.log)))
            ch = channel(t.sock)
            stub = pb2_grpc.ImageServiceStub(ch)
            # Connect first, so the timed call is the pull alone.
            pb2_grpc.RuntimeServiceStub(ch).Version(pb2.VersionRequest(version="v1"), timeout=10)
            req = pb2.PullImageRequest(image=pb2.ImageSpec(image=self.ref))
            sampler = Sampler(t.proc.pid, self.args.interval)
            sampler.start()
            t0 = time.monotonic()
            try:
                reply = stub.PullImage(req, timeout=self.args.timeout)
                error = None
            except grpc.RpcError as e:
                reply, error = None, "%s: %s" % (e.code().name, e.details())
            wall = time.monotonic() - t0
            sampler.finish()
            ch.close()
            if error:
                raise BenchError("%s run %d: PullImage(%s) failed after %.2f s: %s\n%s"
                                 % (t.name, run, self.ref, wall, error, log_tail(t.log)))
            if reply.image_ref != self.image.id:
                note("%s returned image_ref %s, expected %s"
                     % (t.name, reply.image_ref, self.image.id))
            r = {"run": run, "wall": wall, "mibs": self.pull_bytes / MiB / wall,
                 "idle_anon": idle[0], "idle_rss": idle[1],
                 "peak_anon": sampler.peak_anon, "peak_rss": sampler.peak_rss,
                 "child_anon": sampler.child_anon, "child_rss": sampler.child_rss,
                 "samples": sampler.samples, "disk": disk_kib(t.root)}
            r["growth"] = r["peak_anon"] - r["idle_anon"]
            self.results[t.name].append(r)
            self.row(t.name, r)
        finally:
            if t.proc is not None:
                t.stop()
            else:
                remove_tree(t.dir)

    HDR = "%-10s %3s %8s %7s %9s %9s %8s %9s %9s %11s %8s"

    def header(self):
        say(self.HDR % ("runtime", "run", "wall s", "MiB/s", "anon idle", "anon peak", "growth",
                        "rss idle", "rss peak", "child peak", "disk MiB"))
        say(self.HDR % ("-" * 10, "---", "-" * 8, "-" * 7, "-" * 9, "-" * 9, "-" * 8, "-" * 9,
                        "-" * 9, "-" * 11, "-" * 8))

    def row(self, name, r):
        say(self.HDR % (name, r["run"], "%.3f" % r["wall"], "%.1f" % r["mibs"], r["idle_anon"],
                        r["peak_anon"], "%+d" % r["growth"], r["idle_rss"], r["peak_rss"],
                        "%d/%d" % (r["child_anon"], r["child_rss"]), "%.1f" % (r["disk"] / 1024)))

    def run(self):
        self.setup()
        targets = []
        if not self.args.containerd_only:
            targets.append(Tinycrid)
        if not self.args.tinycrid_only:
            targets.append(Containerd)
        say("runs:       %d per runtime, each cold (new daemon on an empty root), alternating;"
            % self.args.runs)
        say("            %d concurrent downloads in both; memory sampled every %.0f ms"
            % (DOWNLOADS, self.args.interval * 1000))
        say("")
        self.header()
        for run in range(1, self.args.runs + 1):
            # Alternate who goes first, so neither always follows the other's writeback.
            order = targets if run % 2 else list(reversed(targets))
            for cls in order:
                self.pull_once(cls, run)
        return self.summary()

    def summary(self):
        say("")
        say("(wall: PullImage request to reply, download + unpack; MiB/s: compressed bytes"
            " fetched / wall;")
        say(" anon/rss: the daemon's RssAnon/VmRSS in KiB, idle = before the pull, peak ="
            " during it;")
        say(" growth = anon peak - anon idle; child peak: sum over the daemon's direct"
            " children, RssAnon/VmRSS;")
        say(" disk MiB: what the daemon's root holds after the pull: blobs and unpacked layers)")
        say("")
        say("%-10s %9s %9s %9s %12s %12s %12s" % ("summary", "wall med", "wall min",
                                               "MiB/s med", "growth med", "growth max",
                                               "child max"))
        med = {}
        for name, rs in self.results.items():
            if not rs:
                continue
            walls = [r["wall"] for r in rs]
            growth = [r["growth"] for r in rs]
            med[name] = (statistics.median(walls), min(walls))
            say("%-10s %9.3f %9.3f %9.1f %9d KiB %8d KiB %8d KiB"
                % (name, med[name][0], med[name][1], self.pull_bytes / MiB / med[name][0],
                   statistics.median(growth), max(growth),
                   max(r["child_anon"] for r in rs)))
        missed = False
        if "tinycrid" in med and "containerd" in med:
            say("")
            ratio = med["tinycrid"][0] / med["containerd"][0]
            ratio_min = med["tinycrid"][1] / med["containerd"][1]
            say("ratio tinycrid/containerd wall time: %.2f (median), %.2f (min)"
                % (ratio, ratio_min))
            ok = ratio <= TIME_RATIO_TARGET
            missed |= not ok
            say("")
            say("targets:")
            say("  pull time (median) <= %.1fx containerd's: %.2fx: %s"
                % (TIME_RATIO_TARGET, ratio, "PASS" if ok else "MISS"))
        elif "tinycrid" in med:
            say("")
            say("targets:")
            say("  pull time vs containerd: not measured (--tinycrid-only)")
        if self.results["tinycrid"]:
            g = max(r["growth"] for r in self.results["tinycrid"])
            ok = g <= TINYCRID_MEM_TARGET_KIB
            missed |= not ok
            say("  tinycrid RssAnon growth during the pull (worst run) <= %d KiB: %d KiB: %s"
                % (TINYCRID_MEM_TARGET_KIB, g, "PASS" if ok else "MISS"))
        return 1 if missed and self.args.strict else 0


def on_sigterm(signum, frame):
    note("%s: stopping" % signal.Signals(signum).name)
    raise SystemExit(128 + signum)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tinycrid", required=True, help="the tinycrid binary")
    ap.add_argument("--work", required=True, help="an empty directory this run may use")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=100)
    ap.add_argument("--layers", type=int, default=5, help="random layers (plus busybox)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--interval", type=float, default=0.05, help="memory sampling, seconds")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds between a daemon's start and its pull")
    ap.add_argument("--timeout", type=float, default=600, help="PullImage deadline, seconds")
    ap.add_argument("--tinycrid-only", action="store_true")
    ap.add_argument("--containerd-only", action="store_true")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()
    if args.runs < 1 or args.size_mib < 1 or args.layers < 1 or args.interval <= 0:
        ap.error("--runs, --size-mib, --layers and --interval must be positive")
    if args.tinycrid_only and args.containerd_only:
        ap.error("--tinycrid-only and --containerd-only exclude each other")
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGHUP, on_sigterm)
    bench = Bench(args)
    try:
        return bench.run()
    except BenchError as e:
        note(str(e))
        return 1
    finally:
        bench.procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
