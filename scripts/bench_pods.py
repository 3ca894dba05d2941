# SPDX-License-Identifier: Apache-2.0
"""Concurrent pod start-up benchmark: tinycrid against Debian's containerd (helper of
scripts/bench-pods).

Run by scripts/bench-pods with /usr/bin/python3 (Debian's grpcio and grpc_tools).
Everything lives under --work, a directory the caller made and removes:

  gen/          Python stubs generated from proto/api.proto
  registry/     one plain-HTTP docker-registry on 127.0.0.1:<free port>
  tinycrid/     tinycrid: config, root, socket, CNI conf and IPAM dir, pod logs
  ts/           tinycrid's state dir (short: container sockets live below it)
  containerd/   containerd (CRI plugin, runc v2 shim, overlayfs): the same
  pids          the PIDs of the processes started here that are still alive
  net           what was made on the host: "bridge NAME", "rule SUBNET BRIDGE" (the
                FORWARD guard), "cgroup NAME" (the pods' cgroup parent, /NAME),
                "rundir /run/containerd" (made by the shims: removed when empty)
  ids           "oci BINARY ROOT ID" for every sandbox and container made here, so the
                caller can force-delete what a killed helper left behind

The busybox test image (conformance/imagebuild.py) and a pause image for containerd
(the same busybox layer, entrypoint /bin/sleep 2147483647: registry.k8s.io is out of
reach) are pushed to the registry; both daemons start once and pull what they need
(PullImage; containerd also its sandbox image) before anything is timed. tinycrid
loads libcurl for a pull and unloads it 30 s after the last one: the rounds start
once it has (--unload-wait), so its memory is that of a daemon running pods.

A round is N pods on one runtime, each one container: N threads, released together,
each send RunPodSandbox -> CreateContainer(sleep 3600) -> StartContainer over one
gRPC channel (HTTP/2, like kubelet's). The time is from the release to the last
StartContainer reply; then ContainerStatus must say RUNNING for every container.
After --settle seconds the memory of the runtime and its helpers is read from /proc
(status: RssAnon; smaps_rollup: Pss): tinycrid plus its container keepers (and
pod-init keepers with --share-pid); containerd plus its containerd-shim-runc-v2
processes and the pause processes. The containers' own processes count for neither.
Then every pod is stopped and removed (StopPodSandbox, RemovePodSandbox, all at
once, timed), and the round checks that nothing is left: no helper process, no
mount under the daemon's directories, no netns, no veth on the bridge, no IPAM lease,
no cgroup below the pods' cgroup parent (/<bridge name>, one per runtime).
"""
import argparse
import configparser
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "conformance"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import imagebuild as ib  # noqa: E402
import bench_pull as bp  # noqa: E402  (registry, processes, stubs, /proc helpers)

BUSYBOX_REPO = "bench/busybox"
PAUSE_REPO = "bench/pause"
TAG = "latest"
PAUSE_ARGV = ["/bin/sleep", "2147483647"]
SLEEP_ARGV = ["sleep", "3600"]
CNI_BIN = "/usr/lib/cni"
RUNC = "/usr/bin/runc"
OCI_RUNTIMES = {"runc": RUNC, "crun": "/usr/bin/crun"}
CONTAINERD_RUNC_ROOT = "/run/containerd/runc/k8s.io"  # the runc v2 shim's default root
CONTAINERD_RUN = "/run/containerd"  # the shims' fixed directory (s/: sockets; runc/)
STATE_DIR_MAX = 108 - len("/ctr/") - 64 - len("/console.sock") - 1
TARGET_COUNT = 50
TIME_TARGET = 3.0     # containerd's time / tinycrid's, at TARGET_COUNT pods
MEMORY_TARGET = 20.0  # containerd's runtime + helpers PSS / tinycrid's


class BenchError(Exception):
    pass


class RoundFailed(Exception):
    pass


say = bp.say


def note(msg):
    print("bench-pods: " + msg, file=sys.stderr, flush=True)


bp.note = note  # bench_pull's process helpers report under this script's name


def sh(*argv):
    return subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True)


def append_line(path, line):
    with open(path, "a") as f:
        f.write(line + "\n")


# --------------------------------------------------------------------------
# /proc
# --------------------------------------------------------------------------

class Proc:
    __slots__ = ("pid", "ppid", "argv")

    def __init__(self, pid, ppid, argv):
        self.pid, self.ppid, self.argv = pid, ppid, argv

    def arg_after(self, flag):
        try:
            return self.argv[self.argv.index(flag) + 1]
        except (ValueError, IndexError):
            return None


def processes():
    """Every process: Proc(pid, ppid, argv as str list); kernel threads left out."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                s = f.read()
            with open("/proc/%s/cmdline" % name, "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if not raw:
            continue
        argv = [a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0")]
        out.append(Proc(int(name), int(s[s.rfind(")") + 2:].split()[1]), argv))
    return out


def memory(pid):
    """{"anon": RssAnon, "rss": VmRSS, "pss": Pss, "pss_anon": Pss_Anon} in KiB, or None."""
    m = {"anon": 0, "rss": 0, "pss": 0, "pss_anon": 0}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    m["anon"] = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    m["rss"] = int(line.split()[1])
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    m["pss"] = int(line.split()[1])
                elif line.startswith("Pss_Anon:"):
                    m["pss_anon"] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return m


def cpu_busy():
    """Seconds of CPU time spent by the whole machine so far (everything but idle and
    iowait), from /proc/stat: the runtimes' children (runc, CNI plugins) count too."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(v[:8]) - v[3] - v[4]) / hz  # user nice system idle iowait irq softirq steal


def proc_cpu(pid):
    """Seconds of CPU time pid itself has used (utime + stime), or 0 when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return 0.0
    fields = s[s.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def maps_library(pid, name):
    """Whether pid has a file whose name contains name mapped."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return any(name in line for line in f)
    except OSError:
        return False


def mounts_under(path):
    prefix = os.path.realpath(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        return [mp for mp in (line.split()[4].encode().decode("unicode_escape") for line in f)
                if mp.startswith(prefix)]


class PeakSampler(threading.Thread):
    """Peak RssAnon of one process while a burst runs (status only: cheap)."""

    def __init__(self, pid, interval=0.05):
        super().__init__(daemon=True, name="peak-sampler")
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.stopping = threading.Event()

    def sample(self):
        m = bp.read_mem(self.pid)
        if m:
            self.peak = max(self.peak, m[0])

    def run(self):
        while True:
            self.sample()
            if self.stopping.wait(self.interval):
                break

    def finish(self):
        self.stopping.set()
        self.join()
        self.sample()
        return self.peak


# --------------------------------------------------------------------------
# The pod networks: one bridge and subnet per runtime, kept on this machine
# --------------------------------------------------------------------------

def pick_slot():
    """A number for this run's bridges and subnets: runs side by side must not share."""
    base = os.getpid() % 200
    for i in range(200):
        n = 20 + (base + i) % 200
        if all(sh("ip", "link", "show", b % n).returncode != 0 for b in ("tcbp-t%d", "tcbp-c%d")):
            return n
    raise BenchError("no free bridge name tcbp-[tc]<20..219>")


class PodNet:
    def __init__(self, work, bridge, subnet, name):
        self.work, self.bridge, self.subnet, self.name = work, bridge, subnet, name
        self.cgroup = bridge  # the pods' cgroup parent: /<bridge name>
        self.rule = ["FORWARD", "-s", subnet, "!", "-o", bridge, "-j", "DROP"]
        self.guarded = False

    def conflist(self, ipam_dir):
        return {
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [{
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": self.subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                },
            }],
        }

    def guard(self):
        """Pod traffic may only go to the bridge (the pods and this host)."""
        append_line(os.path.join(self.work, "net"), "bridge %s" % self.bridge)
        append_line(os.path.join(self.work, "net"), "rule %s %s" % (self.subnet, self.bridge))
        append_line(os.path.join(self.work, "net"), "cgroup %s" % self.cgroup)
        r = sh("iptables", "-I", *self.rule)
        if r.returncode != 0:
            raise BenchError("iptables -I %s: %s" % (" ".join(self.rule), r.stderr.strip()))
        self.guarded = True

    def ports(self):
        try:
            return sorted(os.listdir("/sys/class/net/%s/brif" % self.bridge))
        except OSError:
            return []

    def remove(self):
        remove_cgroup(self.cgroup)
        while sh("iptables", "-D", *self.rule).returncode == 0:
            pass
        if sh("ip", "link", "show", self.bridge).returncode == 0:
            r = sh("ip", "link", "del", self.bridge)
            if r.returncode != 0:
                note("ip link del %s: %s" % (self.bridge, r.stderr.strip()))


def cgroup_dirs(name):
    """The directories of cgroup name (a top-level one) in every mounted hierarchy."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2") and os.path.isdir(os.path.join(fields[4], name)):
                out.append(os.path.join(fields[4], name))
    return out


def cgroup_children(name):
    """Child cgroups left under name (the pods' and containers'), by relative path."""
    out = set()
    for d in cgroup_dirs(name):
        for top, dirs, _files in os.walk(d):
            out.update(os.path.relpath(os.path.join(top, x), d) for x in dirs)
    return sorted(out)


def remove_cgroup(name):
    """rmdir cgroup name and what is below it, deepest first (only empty ones go)."""
    for d in cgroup_dirs(name):
        for top, dirs, _files in os.walk(d, topdown=False):
            for x in dirs:
                try:
                    os.rmdir(os.path.join(top, x))
                except OSError as e:
                    note("rmdir %s: %s" % (os.path.join(top, x), e.strerror))
        try:
            os.rmdir(d)
        except OSError as e:
            note("rmdir %s: %s" % (d, e.strerror))


def remove_empty_dirs(path):
    """rmdir path and the directories below it that are empty, deepest first."""
    for top, dirs, _files in os.walk(path, topdown=False):
        for x in dirs:
            try:
                os.rmdir(os.path.join(top, x))
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def netns_names():
    """The named network namespaces (containerd's CNI netns are /run/netns/cni-*)."""
    try:
        return set(os.listdir("/run/netns"))
    except OSError:
        return set()


def ipam_leases(ipam_dir):
    """Addresses host-local still holds (files named like an IP address)."""
    out = []
    for top, _dirs, files in os.walk(ipam_dir):
        out += [f for f in files if f[:1].isdigit() and f.count(".") == 3]
    return sorted(out)


# --------------------------------------------------------------------------
# The runtimes
# --------------------------------------------------------------------------

class Runtime:
    name = None
    helper_kinds = ()

    def __init__(self, bench, net):
        self.bench = bench
        self.net = net
        self.dir = os.path.join(bench.work, self.name)
        os.makedirs(self.dir, mode=0o700)
        self.log = os.path.join(self.dir, "daemon.log")
        self.ipam_dir = os.path.join(self.dir, "ipam")
        self.log_root = os.path.join(self.dir, "logs")
        self.cni_dir = os.path.join(self.dir, "cni")
        os.mkdir(self.cni_dir)
        with open(os.path.join(self.cni_dir, "10-bench.conflist"), "w") as f:
            json.dump(net.conflist(self.ipam_dir), f, indent=2)
        self.proc = None
        self.ch = None

    @property
    def pid(self):
        return self.proc.pid

    def connect(self):
        pb2, pb2_grpc = self.bench.api
        self.ch = bp.channel(self.sock)
        self.rt = pb2_grpc.RuntimeServiceStub(self.ch)
        self.img = pb2_grpc.ImageServiceStub(self.ch)
        self.rt.Version(pb2.VersionRequest(version="v1"), timeout=10)

    def wait_ready(self, timeout):
        import grpc
        pb2, pb2_grpc = self.bench.api
        deadline = time.monotonic() + timeout
        last = "socket never appeared"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError("%s exited with status %d during start-up\n%s"
                                 % (self.name, self.proc.returncode, bp.log_tail(self.log)))
            if os.path.exists(self.sock):
                ch = bp.channel(self.sock)
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
                         % (self.name, timeout, last, bp.log_tail(self.log)))

    def pull(self, ref):
        pb2 = self.bench.api[0]
        import grpc
        try:
            return self.img.PullImage(pb2.PullImageRequest(image=pb2.ImageSpec(image=ref)),
                                      timeout=300).image_ref
        except grpc.RpcError as e:
            raise BenchError("%s: PullImage(%s): %s: %s\n%s" % (
                self.name, ref, e.code().name, e.details(), bp.log_tail(self.log)))

    def prepare(self):
        self.pull(self.bench.busybox_ref)

    def stop(self):
        if self.ch is not None:
            self.ch.close()
            self.ch = None
        if self.proc is not None:
            rc = self.bench.procs.stop(self.proc, timeout=30)
            if rc != 0:
                note("%s exited with status %d after SIGTERM\n%s"
                     % (self.name, rc, bp.log_tail(self.log)))

    # Subclasses: start(), runc_root, helpers(procs, pod_ids) -> {kind: [pid]},
    # workloads(procs) -> [pid], leftovers() -> [str]


class Tinycrid(Runtime):
    name = "tinycrid"
    helper_kinds = ("keeper", "pod-init")

    def start(self):
        self.sock = os.path.join(self.dir, "sock", "tinycri.sock")
        self.root = os.path.join(self.dir, "root")
        # The keeper puts sockets in <state_dir>/ctr/<64-hex id>/; a short state dir
        # keeps their plain paths within sun_path's 108 bytes (longer ones go through
        # /proc/<pid>/fd), so both runtimes are measured on the common path.
        self.state = os.path.join(self.bench.work, "ts")
        if len(self.state) > STATE_DIR_MAX:
            raise BenchError("tinycrid's state dir %s is longer than %d characters"
                             % (self.state, STATE_DIR_MAX))
        name = self.bench.args.tinycrid_runtime
        self.oci = OCI_RUNTIMES[name]
        self.runc_root = os.path.join(self.state, "runtime", name)
        cp = configparser.ConfigParser(interpolation=None)
        cp.optionxform = str
        cp.read_dict({
            "server": {"socket": self.sock, "root_dir": self.root, "state_dir": self.state,
                       "log_level": "warn"},
            "runtime": {"default_runtime": name},
            "runtime." + name: {"path": self.oci, "root": self.runc_root},
            "cni": {"conf_dir": self.cni_dir, "bin_dirs": CNI_BIN},
            "registry." + self.bench.host: {"insecure": "true"},
        })
        conf = os.path.join(self.dir, "tinycri.conf")
        with open(conf, "w") as f:
            cp.write(f)
        self.proc = self.bench.procs.start([self.bench.tinycrid, "--config", conf], self.log)
        self.wait_ready(15)
        self.connect()

    def helpers(self, procs, pod_ids):
        keepers, inits = [], []
        for p in procs:
            if not p.argv[0].endswith("tinycri-keeper"):
                continue
            if len(p.argv) > 1 and p.argv[1] == "--pod-init":
                if p.arg_after("--id") in pod_ids or p.ppid == self.pid:
                    inits.append(p.pid)
            elif (p.ppid == self.pid
                  or (p.arg_after("--state-dir") or "").startswith(self.state + "/")):
                keepers.append(p.pid)
        return {"keeper": keepers, "pod-init": inits}

    def workloads(self, procs, helpers):
        keepers = set(helpers["keeper"])
        return [p.pid for p in procs if p.ppid in keepers and p.argv == SLEEP_ARGV]

    def leftovers(self, procs):
        out = []
        h = self.helpers(procs, set())
        if h["keeper"]:
            out.append("keepers still running: %s" % h["keeper"])
        nsdir = os.path.join(self.state, "netns")  # a mount itself while pods exist
        ms = mounts_under(self.dir) + [m for m in mounts_under(self.state) if m != nsdir]
        pins = []
        if os.path.isdir(nsdir):
            pins = [n for n in os.listdir(nsdir)]
        if ms:
            out.append("mounts left: %s" % ms)
        if pins:
            out.append("namespace pins left in %s: %s" % (nsdir, pins))
        ctr = [os.path.join(b, n) for b in (os.path.join(self.root, "containers"),
                                            os.path.join(self.state, "ctr"))
               if os.path.isdir(b) for n in os.listdir(b)]
        if ctr:
            out.append("container dirs left: %s" % ctr)
        if os.path.isdir(self.runc_root) and os.listdir(self.runc_root):
            out.append("runc state left: %s" % os.listdir(self.runc_root))
        return out


class Containerd(Runtime):
    name = "containerd"
    helper_kinds = ("shim", "pause")
    runc_root = CONTAINERD_RUNC_ROOT
    oci = RUNC

    def start(self):
        d = self.dir
        if not os.path.exists(CONTAINERD_RUN):
            # The shims make it (outside any configured root): remove it again after.
            append_line(os.path.join(self.bench.work, "net"), "rundir %s" % CONTAINERD_RUN)
            self.bench.made_run_dir = True
        self.sock = os.path.join(d, "containerd.sock")
        self.root = os.path.join(d, "root")
        for sub in ("root", "state", "opt"):
            os.mkdir(os.path.join(d, sub))
        conf = os.path.join(d, "config.toml")
        with open(conf, "w") as f:
            f.write(bp.containerd_config_head(d) + """[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  disable_cgroup = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = "{cni}"
    bin_dir = "{cni_bin}"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{host}"]
    endpoint = ["http://{host}"]
""".format(d=d, host=self.bench.host, pause=self.bench.pause_ref, runc=RUNC,
           cni=self.cni_dir, cni_bin=CNI_BIN))
        self.proc = self.bench.procs.start(["containerd", "--config", conf], self.log)
        self.wait_ready(30)
        self.connect()

    def prepare(self):
        super().prepare()
        self.pull(self.bench.pause_ref)

    def shims(self, procs):
        return [p.pid for p in procs if p.argv[0].endswith("containerd-shim-runc-v2")
                and p.arg_after("-address") == self.sock]

    def helpers(self, procs, pod_ids):
        shims = set(self.shims(procs))
        pause = [p.pid for p in procs if p.ppid in shims and p.argv == PAUSE_ARGV]
        return {"shim": sorted(shims), "pause": pause}

    def workloads(self, procs, helpers):
        shims = set(helpers["shim"])
        return [p.pid for p in procs if p.ppid in shims and p.argv == SLEEP_ARGV]

    def leftovers(self, procs):
        out = []
        shims = self.shims(procs)
        if shims:
            out.append("shims still running: %s" % shims)
        ms = mounts_under(self.dir)
        if ms:
            out.append("mounts left: %s" % ms)
        return out


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------

def med(xs):
    return statistics.median(xs) if xs else 0


def fmt_ratio(x):
    return "%.1fx" % x if x < 100 else "%.0fx" % x


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = os.path.realpath(args.work)
        self.tinycrid = args.tinycrid
        self.procs = bp.Procs(self.work)
        self.runtimes = []
        self.nets = []
        self.results = {}   # (runtime, count) -> [round dict]
        self.failures = []  # text of failed rounds
        self.ids_path = os.path.join(self.work, "ids")
        self.made_run_dir = False

    # -- setup -----------------------------------------------------------------

    def setup(self):
        self.api = bp.load_api(self.work)
        busybox = ib.busybox_image()
        pause = ib.busybox_image(Entrypoint=PAUSE_ARGV[:1], Cmd=PAUSE_ARGV[1:],
                                 Labels={"tinycri.bench": "pause"})
        self.registry, port = bp.start_registry(self.procs, self.work)
        self.host = "127.0.0.1:%d" % port
        client = ib.RegistryClient("http://" + self.host, timeout=60)
        client.push(BUSYBOX_REPO, TAG, busybox)
        client.push(PAUSE_REPO, TAG, pause)
        self.busybox_ref = "%s/%s:%s" % (self.host, BUSYBOX_REPO, TAG)
        self.pause_ref = "%s/%s:%s" % (self.host, PAUSE_REPO, TAG)
        say("images:     %s (busybox-static, %.1f MiB gzip)"
            % (self.busybox_ref, busybox.layers[0].blob.size / (1 << 20)))
        say("            %s (containerd's sandbox_image: busybox, %s)"
            % (self.pause_ref, " ".join(PAUSE_ARGV)))

        slot = pick_slot()
        specs = []
        if not self.args.containerd_only:
            specs.append((Tinycrid, "tcbp-t%d" % slot, "10.93.%d.0/24" % slot))
        if not self.args.tinycrid_only:
            specs.append((Containerd, "tcbp-c%d" % slot, "10.94.%d.0/24" % slot))
        for cls, bridge, subnet in specs:
            net = PodNet(self.work, bridge, subnet, "tinycri-bench-" + cls.name)
            self.nets.append(net)
            net.guard()
            rt = cls(self, net)
            self.runtimes.append(rt)
            rt.start()
            t0 = time.monotonic()
            rt.prepare()
            say("%-11s pid %d; bridge %s %s (ipMasq off, FORWARD -s %s ! -o %s DROP);"
                " images pulled in %.2f s" % (rt.name + ":", rt.pid, bridge, subnet, subnet,
                                             bridge, time.monotonic() - t0))
        for rt in self.runtimes:
            if isinstance(rt, Tinycrid) and self.args.unload_wait > 0:
                self.wait_unload(rt)

    def wait_unload(self, rt):
        """tinycrid dlopen()s libcurl for a pull and unloads it XFERLIB_IDLE_MS (30 s)
        after the last one: measure the daemon as it runs pods, not as it pulls."""
        t0 = time.monotonic()
        deadline = t0 + self.args.unload_wait
        while maps_library(rt.pid, "/libcurl") and time.monotonic() < deadline:
            time.sleep(0.5)
        if maps_library(rt.pid, "/libcurl"):
            say("            tinycrid still maps libcurl %.0f s after the pulls (measured so)"
                % self.args.unload_wait)
        else:
            say("            tinycrid unloaded libcurl %.1f s after the pulls (its idle unload)"
                % (time.monotonic() - t0))

    # -- one round -------------------------------------------------------------

    def pod_config(self, rt, name):
        pb = self.api[0]
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=str(uuid.uuid4()),
                                           namespace="bench"),
            hostname=name,
            log_directory=os.path.join(rt.log_root, name),
            labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "bench"},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent="/" + rt.net.cgroup,
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(
                        network=pb.POD, ipc=pb.POD,
                        pid=pb.POD if self.args.share_pid else pb.CONTAINER))))

    def container_config(self):
        pb = self.api[0]
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="sleep", attempt=0),
            image=pb.ImageSpec(image=self.busybox_ref),
            command=SLEEP_ARGV,
            log_path="sleep/0.log",
            linux=pb.LinuxContainerConfig(
                security_context=pb.LinuxContainerSecurityContext(
                    namespace_options=pb.NamespaceOption(
                        network=pb.POD, ipc=pb.POD,
                        pid=pb.POD if self.args.share_pid else pb.CONTAINER))))

    def burst(self, n, fn):
        """Run fn(i) for i < n in n threads released together; -> (wall, results)."""
        barrier = threading.Barrier(n + 1)
        results = [None] * n

        def body(i):
            barrier.wait()
            t = time.monotonic()
            results[i] = fn(i)
            results[i]["lat"] = time.monotonic() - t

        threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.monotonic()
        for t in threads:
            t.join()
        return time.monotonic() - t0, results

    def call(self, method, req, rec, phase):
        """One timed RPC; on failure record (phase, error) in rec and return None."""
        import grpc
        t = time.monotonic()
        try:
            reply = method(req, timeout=self.args.timeout)
        except grpc.RpcError as e:
            rec["error"] = "%s: %s: %s (after %.2f s)" % (phase, e.code().name, e.details(),
                                                        time.monotonic() - t)
            return None
        rec[phase] = time.monotonic() - t
        return reply

    def round(self, rt, n, run):
        pb = self.api[0]
        prefix = "bp%d-%d" % (n, run)
        names = ["%s-%02d" % (prefix, i) for i in range(n)]
        pods = [None] * n
        ctrs = [None] * n
        cfgs = [self.pod_config(rt, name) for name in names]
        ccfg = self.container_config()
        idle = memory(rt.pid)
        if idle is None:
            raise BenchError("%s is gone\n%s" % (rt.name, bp.log_tail(rt.log)))

        def up(i):
            rec = {}
            r = self.call(rt.rt.RunPodSandbox,
                          pb.RunPodSandboxRequest(config=cfgs[i]), rec, "RunPodSandbox")
            if r is None:
                return rec
            pods[i] = r.pod_sandbox_id
            append_line(self.ids_path, "oci %s %s %s" % (rt.oci, rt.runc_root,
                                                         r.pod_sandbox_id))
            r = self.call(rt.rt.CreateContainer,
                          pb.CreateContainerRequest(pod_sandbox_id=pods[i], config=ccfg,
                                                    sandbox_config=cfgs[i]),
                          rec, "CreateContainer")
            if r is None:
                return rec
            ctrs[i] = r.container_id
            append_line(self.ids_path, "oci %s %s %s" % (rt.oci, rt.runc_root,
                                                         r.container_id))
            self.call(rt.rt.StartContainer,
                      pb.StartContainerRequest(container_id=ctrs[i]), rec, "StartContainer")
            return rec

        res = {"runtime": rt.name, "n": n, "run": run, "idle_anon": idle["anon"]}
        errors = []
        netns_before = netns_names()
        try:
            sampler = PeakSampler(rt.pid)
            sampler.start()
            cpu0, dcpu0 = cpu_busy(), proc_cpu(rt.pid)
            wall, recs = self.burst(n, up)
            res["cpu"] = cpu_busy() - cpu0
            res["dcpu"] = proc_cpu(rt.pid) - dcpu0
            res["peak_anon"] = sampler.finish()
            res["wall"] = wall
            for i, rec in enumerate(recs):
                if "error" in rec:
                    errors.append("pod %s: %s" % (names[i], rec["error"]))
            ok = [r for r in recs if "error" not in r]
            res["lat_med"] = med([r["lat"] for r in ok])
            res["lat_max"] = max([r["lat"] for r in ok] or [0])
            for ph in ("RunPodSandbox", "CreateContainer", "StartContainer"):
                res[ph] = med([r[ph] for r in ok])
            if errors:
                raise RoundFailed()

            for i, cid in enumerate(ctrs):
                rec = {}
                reply = self.call(rt.rt.ContainerStatus,
                                  pb.ContainerStatusRequest(container_id=cid), rec,
                                  "ContainerStatus")
                if reply is None:
                    errors.append("pod %s: %s" % (names[i], rec["error"]))
                    continue
                st = reply.status
                if st.state != pb.CONTAINER_RUNNING:
                    errors.append("pod %s: container %s is %s after StartContainer returned"
                                  % (names[i], cid[:12], pb.ContainerState.Name(st.state)))
            if errors:
                raise RoundFailed()

            time.sleep(self.args.settle)
            self.measure(rt, res, set(pods))
            if res["workloads"] != n:
                errors.append("%d of %d containers' sleep processes found"
                              % (res["workloads"], n))
                raise RoundFailed()
        except RoundFailed:
            pass
        finally:
            res["down"], down_errors = self.teardown(rt, pods)
            errors += down_errors
            errors += self.check_clean(rt, netns_before)
        res["errors"] = errors
        self.results.setdefault((rt.name, n), []).append(res)
        self.row(res)
        if errors:
            msg = "%s, %d pods, run %d:\n  %s" % (rt.name, n, run, "\n  ".join(errors))
            self.failures.append(msg)
            note("FAILED " + msg + "\n" + bp.log_tail(rt.log, 30))
        return res

    def measure(self, rt, res, pod_ids):
        procs = processes()
        helpers = rt.helpers(procs, pod_ids)
        res["workloads"] = len(rt.workloads(procs, helpers))
        d = memory(rt.pid) or {"anon": 0, "pss": 0, "rss": 0, "pss_anon": 0}
        res["daemon"] = d
        res["helpers"] = {}
        tot_anon, tot_pss = d["anon"], d["pss"]
        for kind in rt.helper_kinds:
            ms = [m for m in (memory(p) for p in helpers.get(kind, [])) if m]
            res["helpers"][kind] = ms
            tot_anon += sum(m["anon"] for m in ms)
            tot_pss += sum(m["pss"] for m in ms)
        res["total_anon"], res["total_pss"] = tot_anon, tot_pss

    def teardown(self, rt, pods):
        """StopPodSandbox + RemovePodSandbox for every pod made, all at once."""
        pb = self.api[0]
        made = [p for p in pods if p]
        if not made:
            return 0.0, []

        def down(i):
            rec = {}
            if self.call(rt.rt.StopPodSandbox,
                         pb.StopPodSandboxRequest(pod_sandbox_id=made[i]), rec,
                         "StopPodSandbox") is not None:
                self.call(rt.rt.RemovePodSandbox,
                          pb.RemovePodSandboxRequest(pod_sandbox_id=made[i]), rec,
                          "RemovePodSandbox")
            return rec

        wall, recs = self.burst(len(made), down)
        errors = ["teardown of pod %s: %s" % (made[i][:12], r["error"])
                  for i, r in enumerate(recs) if "error" in r]
        return wall, errors

    def check_clean(self, rt, netns_before):
        pb = self.api[0]
        problems = []
        deadline = time.monotonic() + 10
        while True:
            problems = rt.leftovers(processes())
            left_pods = rt.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items
            left_ctrs = rt.rt.ListContainers(pb.ListContainersRequest(), timeout=30).containers
            if left_pods:
                problems.append("ListPodSandbox still lists %d pods" % len(left_pods))
            if left_ctrs:
                problems.append("ListContainers still lists %d containers" % len(left_ctrs))
            ports = rt.net.ports()
            if ports:
                problems.append("veths left on %s: %s" % (rt.net.bridge, ports))
            netns = sorted(netns_names() - netns_before)
            if netns:
                problems.append("netns left in /run/netns: %s" % netns)
            cgroups = cgroup_children(rt.net.cgroup)
            if cgroups:
                problems.append("cgroups left under /%s: %s" % (rt.net.cgroup, cgroups))
            leases = ipam_leases(rt.ipam_dir)
            if leases:
                problems.append("IPAM leases left: %s" % leases)
            if not problems or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return ["left behind: " + p for p in problems]

    # -- output ----------------------------------------------------------------

    HDR = "%-10s %4s %3s %9s %6s %6s %7s %7s %7s %7s %7s %9s %9s %9s %9s %7s"

    def header(self):
        say(self.HDR % ("runtime", "pods", "run", "running s", "cpu s", "daemon", "pod med",
                        "pod max", "run med", "crt med", "sta med", "anon idle", "anon peak",
                        "anon up", "pss up", "down s"))
        say(self.HDR % tuple("-" * w for w in (10, 4, 3, 9, 6, 6, 7, 7, 7, 7, 7, 9, 9, 9, 9, 7)))

    def row(self, r):
        if "wall" not in r:
            return
        d = r.get("daemon")
        say(self.HDR % (r["runtime"], r["n"], r["run"], "%.3f" % r["wall"], "%.2f" % r["cpu"],
                        "%.2f" % r["dcpu"],
                        "%.3f" % r["lat_med"], "%.3f" % r["lat_max"],
                        "%.3f" % r["RunPodSandbox"], "%.3f" % r["CreateContainer"],
                        "%.3f" % r["StartContainer"], r["idle_anon"], r["peak_anon"],
                        d["anon"] if d else "-", d["pss"] if d else "-",
                        "%.3f" % r["down"]) + ("  FAILED" if r.get("errors") else ""))

    def summary(self):
        say("")
        say("(running s: from the release of all N requests to the last StartContainer reply;")
        say(" cpu s: CPU time the whole machine spent meanwhile (%d CPUs: at most %d x running s),"
            % (os.cpu_count(), os.cpu_count()))
        say(" daemon: the part the daemon process itself used (not runc, CNI plugins, keepers,"
            " shims);")
        say(" pod med/max: one pod's RunPodSandbox + CreateContainer + StartContainer;"
            " run/crt/sta med:")
        say(" median time of each call; anon idle/peak/up: the daemon's RssAnon in KiB before"
            " the round,")
        say(" peak during the burst, with all pods up; pss up: its Pss then; down s:"
            " StopPodSandbox +")
        say(" RemovePodSandbox of all pods, all at once)")
        good = {k: [r for r in v if not r["errors"] and "total_pss" in r]
                for k, v in self.results.items()}
        say("")
        say("memory with all pods running, KiB (RssAnon, Pss; helpers: min / median / max"
            " per process, and summed;")
        say(" Pss_Anon: the anonymous part of Pss, summed):")
        H = "%-10s %4s %-9s %5s %17s %17s %17s %9s"
        say(H % ("runtime", "pods", "process", "count", "RssAnon min/med/max",
                 "Pss min/med/max", "sum RssAnon/Pss", "Pss_Anon"))
        say(H % ("-" * 10, "-" * 4, "-" * 9, "-" * 5, "-" * 17, "-" * 17, "-" * 17, "-" * 9))
        for n in self.args.counts:
            for rt in self.runtimes:
                rs = good.get((rt.name, n))
                if not rs:
                    continue
                r = self.median_round(rs)
                d = r["daemon"]
                say(H % (rt.name, n, "daemon", 1, "%d" % d["anon"], "%d" % d["pss"],
                         "%d / %d" % (d["anon"], d["pss"]), d["pss_anon"]))
                tot_pa = d["pss_anon"]
                for kind in rt.helper_kinds:
                    ms = r["helpers"].get(kind, [])
                    if not ms:
                        if kind == "pod-init" and not self.args.share_pid:
                            continue
                        say(H % ("", "", kind, 0, "-", "-", "0 / 0", 0))
                        continue
                    a = sorted(m["anon"] for m in ms)
                    p = sorted(m["pss"] for m in ms)
                    pa = sum(m["pss_anon"] for m in ms)
                    tot_pa += pa
                    say(H % ("", "", kind, len(ms), "%d/%d/%d" % (a[0], med(a), a[-1]),
                             "%d/%d/%d" % (p[0], med(p), p[-1]),
                             "%d / %d" % (sum(a), sum(p)), pa))
                say(H % ("", "", "TOTAL", "", "", "", "%d / %d" % (r["total_anon"],
                                                                  r["total_pss"]), tot_pa))
        names = [rt.name for rt in self.runtimes]
        missed = False
        if names == ["tinycrid", "containerd"]:
            say("")
            say("ratios containerd / tinycrid (median over runs):")
            H2 = "%4s %11s %11s %7s %22s %22s %11s"
            say(H2 % ("pods", "tinycrid s", "containerd", "time", "runtime+helpers",
                      "runtime+helpers", "teardown"))
            say(H2 % ("", "running", "running s", "ratio", "Pss ratio", "RssAnon ratio",
                      "time ratio"))
            ratios = {}
            for n in self.args.counts:
                t, c = good.get(("tinycrid", n)), good.get(("containerd", n))
                if not t or not c:
                    say(H2 % (n, "-", "-", "-", "-", "-", "-"))
                    continue
                tw, cw = med([r["wall"] for r in t]), med([r["wall"] for r in c])
                tp, cp = med([r["total_pss"] for r in t]), med([r["total_pss"] for r in c])
                ta, ca = med([r["total_anon"] for r in t]), med([r["total_anon"] for r in c])
                td, cd = med([r["down"] for r in t]), med([r["down"] for r in c])
                ratios[n] = (cw / tw, cp / tp, ca / ta)
                say(H2 % (n, "%.3f" % tw, "%.3f" % cw, fmt_ratio(cw / tw),
                          "%d/%d=%s" % (cp, tp, fmt_ratio(cp / tp)),
                          "%d/%d=%s" % (ca, ta, fmt_ratio(ca / ta)),
                          fmt_ratio(cd / td) if td > 0 else "-"))
            say("")
            say("targets:")
            if self.args.tinycrid_runtime != "runc":
                say("  (tinycrid runs %s here, containerd runc: not the issue's comparison)"
                    % self.args.tinycrid_runtime)
            n = TARGET_COUNT if TARGET_COUNT in self.args.counts else max(self.args.counts)
            tag = "" if n == TARGET_COUNT else " (%d pods: --counts has no %d)" % (
                n, TARGET_COUNT)
            if n in ratios:
                tr, pr, ar = ratios[n]
                ok = tr >= TIME_TARGET
                missed |= not ok
                say("  time to %d running pods >= %.0fx faster than containerd: %s%s: %s"
                    % (n, TIME_TARGET, fmt_ratio(tr), tag, "PASS" if ok else "MISS"))
                for what, x in (("Pss", pr), ("RssAnon", ar)):
                    ok = x >= MEMORY_TARGET
                    missed |= not ok
                    say("  runtime + helpers memory (%s) with %d pods >= %.0fx smaller: %s%s: %s"
                        % (what, n, MEMORY_TARGET, fmt_ratio(x), tag, "PASS" if ok else "MISS"))
            else:
                missed = True
                say("  not measured: a %d-pod round failed on one runtime: MISS" % n)
        if self.failures:
            say("")
            say("FAILED rounds:")
            for f in self.failures:
                say("  " + f.replace("\n", "\n  "))
        if self.failures:
            return 1
        return 1 if missed and self.args.strict else 0

    @staticmethod
    def median_round(rs):
        """The round whose total Pss is the median (the lower one of an even count)."""
        s = sorted(rs, key=lambda r: r["total_pss"])
        return s[(len(s) - 1) // 2]

    # -- all -------------------------------------------------------------------

    def run(self):
        self.setup()
        rts = "runc" if self.args.tinycrid_runtime == "runc" else \
            "tinycrid %s, containerd runc" % self.args.tinycrid_runtime
        say("workload:   N pods x 1 container (%s), pid namespace per %s, runtime %s;"
            " released together" % (" ".join(SLEEP_ARGV),
                                   "pod" if self.args.share_pid else "container", rts))
        say("            over one gRPC channel; counts %s, %d run(s) each, memory read %.1f s"
            " after the last start" % (",".join(map(str, self.args.counts)), self.args.runs,
                                       self.args.settle))
        say("")
        self.header()
        for run in range(1, self.args.runs + 1):
            for k, n in enumerate(self.args.counts):
                order = self.runtimes if (run + k) % 2 else list(reversed(self.runtimes))
                for rt in order:
                    self.round(rt, n, run)
        return self.summary()

    # -- cleanup ---------------------------------------------------------------

    def cleanup(self):
        """Whatever a failure left: pods via CRI first, then by force; daemons; network."""
        pb = self.api[0] if hasattr(self, "api") else None
        for rt in self.runtimes:
            if rt.ch is None or rt.proc is None or rt.proc.poll() is not None:
                continue
            try:
                for p in rt.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items:
                    rt.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p.id),
                                         timeout=60)
                    rt.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id),
                                           timeout=60)
            except Exception as e:  # noqa: BLE001 -- best effort, the force path follows
                note("%s: removing pods: %s" % (rt.name, e))
        for rt in reversed(self.runtimes):
            rt.stop()
        force_cleanup(self.work, {p.pid for p in self.procs.live})
        if self.made_run_dir:
            remove_empty_dirs(CONTAINERD_RUN)
        for net in self.nets:
            net.remove()


def force_cleanup(work, keep=()):
    """<runtime> delete --force what ids lists, then stop helpers with an argument under work."""
    ids = os.path.join(work, "ids")
    if os.path.exists(ids):
        with open(ids) as f:
            entries = [line.split() for line in f if line.startswith("oci ")]
        for _, oci, root, cid in reversed(entries):
            if os.path.exists(os.path.join(root, cid)):
                note("%s delete --force %s (root %s)" % (oci, cid, root))
                sh(oci, "--root", root, "delete", "--force", cid)
    mine = [p for p in processes() if p.pid != os.getpid() and p.pid not in keep
            and any(a.startswith(work + "/") for a in p.argv[1:])]
    for p in mine:
        note("stopping leftover pid %d (%s)" % (p.pid, " ".join(p.argv)[:120]))
        try:
            os.kill(p.pid, signal.SIGKILL)
        except OSError:
            pass


def on_sigterm(signum, frame):
    note("%s: stopping" % signal.Signals(signum).name)
    raise SystemExit(128 + signum)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tinycrid", required=True, help="the tinycrid binary")
    ap.add_argument("--work", required=True, help="an empty directory this run may use")
    ap.add_argument("--counts", default="1,10,50", help="pods per round, comma separated")
    ap.add_argument("--runs", type=int, default=1, help="rounds per count and runtime")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds between the last start and the memory reading")
    ap.add_argument("--timeout", type=float, default=120, help="deadline of each call, s")
    ap.add_argument("--unload-wait", type=float, default=45,
                    help="wait up to this many seconds after the pulls for tinycrid to unload"
                         " libcurl (0: do not wait)")
    ap.add_argument("--tinycrid-runtime", choices=sorted(OCI_RUNTIMES), default="runc",
                    help="tinycrid's OCI runtime (containerd always uses runc)")
    ap.add_argument("--share-pid", action="store_true",
                    help="pid namespace per pod (tinycrid then runs a pod-init keeper)")
    ap.add_argument("--tinycrid-only", action="store_true")
    ap.add_argument("--containerd-only", action="store_true")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()
    try:
        args.counts = list(dict.fromkeys(int(x) for x in args.counts.split(",")))
    except ValueError:
        ap.error("--counts wants a list like 1,10,50")
    if any(n < 1 or n > 250 for n in args.counts):
        ap.error("--counts: each count must be 1..250 (one /24 per runtime)")
    if args.runs < 1 or args.settle < 0 or args.timeout <= 0:
        ap.error("--runs and --timeout must be positive, --settle not negative")
    if args.tinycrid_only and args.containerd_only:
        ap.error("--tinycrid-only and --containerd-only exclude each other")
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGHUP, on_sigterm)
    bench = Bench(args)
    try:
        return bench.run()
    except (BenchError, bp.BenchError) as e:
        note(str(e))
        return 1
    finally:
        try:
            bench.cleanup()
        finally:
            bench.procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
