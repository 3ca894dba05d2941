# SPDX-License-Identifier: Apache-2.0
"""Polling benchmark: kubelet's CRI polling against tinycrid and Debian's containerd
(helper of scripts/bench-poll).

Run by scripts/bench-poll with /usr/bin/python3. The set-up is scripts/bench_pods.py's
(a local registry with the busybox test image and a pause image for containerd, one
CNI bridge per runtime with a FORWARD guard, both daemons started on private roots
under --work, images pulled before anything is measured, tinycrid measured once it
has unloaded libcurl): see that file for what is made on the host and how it is
removed, including after a crash.

Then, per runtime: --pods pods (each with its own cgroup parent /<bridge>/pod<i>, as
kubelet gives them) of --per-pod containers each (`sleep 3600`), made 8 at a time and
all checked RUNNING. One warm-up round of the four calls below (first calls pay for
one-time work on both runtimes: tinycrid opens each pod's network counters and
measures each writable layer once, containerd loads its metrics plumbing), then
--duration seconds of kubelet's polling pattern: ListPodSandbox and ListContainers
every second (the PLEG relist), and ListContainerStats and ListPodSandboxStats every
ten seconds (the summary API's cadence), each paced by a tinycri-rpcload (the C
nghttp2 load generator of scripts/bench-rpc, --interval: a call costs it microseconds,
so the latencies are the servers', not a Python client's). Each call's latency is
recorded; the daemon's CPU time (utime + stime from
/proc/<pid>/stat) and that of its helpers (containerd's shims, which gather the
metrics containerd asks them for; tinycrid's keepers, and its reaped children: the
stats' walk and namespace children) are read before and after, and its RssAnon at the
start and at the end of the polling. The runtimes are polled one after the other,
never at once. Then every pod is removed and the round checks nothing is left.

Prints p50 and p99 (nearest rank) per call, CPU seconds, RssAnon, the ratios, and
the issue's targets: list and stats calls' p99 at most 1/10 of containerd's, the
daemon's CPU under polling at most 1/10 of containerd's, no RssAnon growth.
"""
import argparse
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_pods as bpods  # noqa: E402
import bench_pull as bp  # noqa: E402

CALLS = [("ListPodSandbox", 1.0), ("ListContainers", 1.0),
         ("ListContainerStats", 10.0), ("ListPodSandboxStats", 10.0)]
LATENCY_TARGET = 10.0  # containerd's p99 / tinycrid's
CPU_TARGET = 10.0      # containerd's daemon CPU / tinycrid's
GROWTH_KIB = 64        # RssAnon may move by a few pages, not grow
say = bpods.say


def note(msg):
    print("bench-poll: " + msg, file=sys.stderr, flush=True)


bpods.note = note
bp.note = note


def proc_times(pid):
    """(own utime + stime, reaped children's cutime + cstime) of pid in seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return 0.0, 0.0
    v = s[s.rfind(")") + 2:].split()
    hz = os.sysconf("SC_CLK_TCK")
    return (int(v[11]) + int(v[12])) / hz, (int(v[13]) + int(v[14])) / hz


def rss_anon(pid):
    m = bpods.memory(pid)
    return m["anon"] if m else 0


class PollBench(bpods.Bench):
    def __init__(self, args):
        super().__init__(args)
        self.rpcload_path = os.path.join(os.path.dirname(args.tinycrid), "tinycri-rpcload")
        if args.rpcload:
            self.rpcload_path = args.rpcload
        if not os.access(self.rpcload_path, os.X_OK):
            raise SystemExit("bench-poll: no tinycri-rpcload at %s" % self.rpcload_path)

    def pod_config(self, rt, name):
        cfg = super().pod_config(rt, name)
        # kubelet gives each pod a cgroup of its own: /kubepods/<qos>/pod<uid>.
        cfg.linux.cgroup_parent = "/%s/%s" % (rt.net.cgroup, name)
        return cfg

    def populate(self, rt):
        """args.pods pods x args.per_pod containers, made 8 at a time; -> pod ids."""
        pb = self.api[0]
        n = self.args.pods
        names = ["poll-%03d" % i for i in range(n)]
        cfgs = [self.pod_config(rt, name) for name in names]
        pods = [None] * n
        errors = []
        lock = threading.Lock()
        todo = list(range(n))

        def worker():
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop()
                rec = {}
                r = self.call(rt.rt.RunPodSandbox, pb.RunPodSandboxRequest(config=cfgs[i]), rec,
                              "RunPodSandbox")
                if r is None:
                    errors.append("%s: %s" % (names[i], rec["error"]))
                    continue
                pods[i] = r.pod_sandbox_id
                bpods.append_line(self.ids_path, "oci %s %s %s" % (rt.oci, rt.runc_root,
                                                                    pods[i]))
                for c in range(self.args.per_pod):
                    ccfg = self.container_config()
                    ccfg.metadata.name = "sleep-%d" % c
                    ccfg.log_path = "sleep-%d/0.log" % c
                    r = self.call(rt.rt.CreateContainer,
                                  pb.CreateContainerRequest(pod_sandbox_id=pods[i], config=ccfg,
                                                            sandbox_config=cfgs[i]),
                                  rec, "CreateContainer")
                    if r is None:
                        errors.append("%s: %s" % (names[i], rec["error"]))
                        break
                    bpods.append_line(self.ids_path, "oci %s %s %s" % (rt.oci, rt.runc_root,
                                                                        r.container_id))
                    if self.call(rt.rt.StartContainer,
                                 pb.StartContainerRequest(container_id=r.container_id), rec,
                                 "StartContainer") is None:
                        errors.append("%s: %s" % (names[i], rec["error"]))
                        break

        t0 = time.monotonic()
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise bpods.BenchError("%s: making the pods failed:\n  %s" % (
                rt.name, "\n  ".join(errors[:10])))
        running = [c for c in rt.rt.ListContainers(pb.ListContainersRequest(), timeout=60).containers
                   if c.state == pb.CONTAINER_RUNNING]
        want = n * self.args.per_pod
        if len(running) != want:
            raise bpods.BenchError("%s: %d of %d containers running" % (rt.name, len(running),
                                                                        want))
        say("%-11s %d pods x %d containers running in %.1f s" % (
            rt.name + ":", n, self.args.per_pod, time.monotonic() - t0))
        return [p for p in pods if p]

    def requests(self):
        pb = self.api[0]
        return {"ListPodSandbox": pb.ListPodSandboxRequest(),
                "ListContainers": pb.ListContainersRequest(),
                "ListContainerStats": pb.ListContainerStatsRequest(),
                "ListPodSandboxStats": pb.ListPodSandboxStatsRequest()}

    def one_call(self, rt, name, req, lat):
        import grpc
        t = time.perf_counter()
        try:
            reply = getattr(rt.rt, name)(req, timeout=self.args.timeout)
        except grpc.RpcError as e:
            raise bpods.BenchError("%s: %s: %s: %s" % (rt.name, name, e.code().name,
                                                       e.details()))
        lat.setdefault(name, []).append(time.perf_counter() - t)
        return reply

    def helper_pids(self, rt):
        procs = bpods.processes()
        h = rt.helpers(procs, set())
        return [p for kind in rt.helper_kinds for p in h.get(kind, [])]

    def rpcload(self, rt, name, every):
        """tinycri-rpcload polling one method every `every` seconds (a C nghttp2 client
        that costs microseconds a call, so the latency is the server's)."""
        argv = [self.rpcload_path, "--socket", rt.sock, "--method", name, "--interval",
                "%g" % every, "--duration", "%g" % self.args.duration, "--drain",
                "%g" % self.args.timeout, "--quiet"]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def poll(self, rt, pods):
        reqs = self.requests()
        warm = {}
        for name, _ in CALLS:
            self.one_call(rt, name, reqs[name], warm)
        # The warm-up's stats must cover every container (they are the workload measured).
        stats = self.one_call(rt, "ListContainerStats", reqs["ListContainerStats"], warm).stats
        if len(stats) != len(pods) * self.args.per_pod:
            raise bpods.BenchError("%s: ListContainerStats has %d records, not %d"
                                   % (rt.name, len(stats), len(pods) * self.args.per_pod))
        helpers = self.helper_pids(rt)
        anon0 = rss_anon(rt.pid)
        own0, kids0 = proc_times(rt.pid)
        help0 = sum(sum(proc_times(p)) for p in helpers)
        t0 = time.monotonic()
        loads = [(name, self.rpcload(rt, name, every)) for name, every in CALLS]
        lat = {}
        for name, proc in loads:
            out, err = proc.communicate(timeout=self.args.duration + self.args.timeout + 30)
            line = out.strip().splitlines()[-1] if out.strip() else ""
            kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
            if proc.returncode != 0 or "p99_us" not in kv or int(kv.get("errors", "1")):
                raise bpods.BenchError("%s: tinycri-rpcload %s: exit %d: %s %s" % (
                    rt.name, name, proc.returncode, line, err.strip()[-500:]))
            lat[name] = {"calls": int(kv["calls"]), "p50": float(kv["p50_us"]) / 1000,
                         "p99": float(kv["p99_us"]) / 1000, "max": float(kv["max_us"]) / 1000}
        wall = time.monotonic() - t0
        own1, kids1 = proc_times(rt.pid)
        help1 = sum(sum(proc_times(p)) for p in helpers)
        anon1 = rss_anon(rt.pid)
        res = {"runtime": rt.name, "wall": wall, "lat": lat, "anon0": anon0, "anon1": anon1,
               "cpu": own1 - own0, "children": kids1 - kids0, "helpers": help1 - help0,
               "n_helpers": len(helpers)}
        say("%-11s polled %.0f s: %s" % (rt.name + ":", wall, ", ".join(
            "%d %s" % (lat[name]["calls"], name) for name, _ in CALLS)))
        return res

    def report(self, results):
        say("")
        say("latency per call, ms (p50 / p99, measured by tinycri-rpcload; %g s of polling)"
            % self.args.duration)
        names = [r["runtime"] for r in results]
        H = "%-24s" + " %21s" * len(results) + (" %11s" if len(results) == 2 else "")
        say(H % (("call",) + tuple(names) + (("p99 ratio",) if len(results) == 2 else ())))
        say(H % (("-" * 24,) + ("-" * 21,) * len(results) + (("-" * 11,) if len(results) == 2
                                                               else ())))
        ratios = {}
        for name, every in CALLS:
            cells = []
            p99s = []
            for r in results:
                m = r["lat"][name]
                cells.append("%8.3f / %8.3f" % (m["p50"], m["p99"]))
                p99s.append(m["p99"])
            row = ("%s (%gs)" % (name, every),) + tuple(cells)
            if len(results) == 2:
                ratios[name] = p99s[1] / p99s[0] if p99s[0] else float("inf")
                row += (bpods.fmt_ratio(ratios[name]),)
            say(H % row)
        say("")
        say("CPU seconds while polling, and memory")
        H = "%-24s" + " %21s" * len(results)
        say(H % (("",) + tuple(names)))
        say(H % (("daemon CPU s",) + tuple("%.3f" % r["cpu"] for r in results)))
        say(H % (("  + its reaped children",) + tuple("%.3f" % r["children"] for r in results)))
        say(H % (("  + helpers (keepers/shims)",) + tuple(
            "%.3f (%d)" % (r["helpers"], r["n_helpers"]) for r in results)))
        say(H % (("daemon RssAnon KiB start",) + tuple("%d" % r["anon0"] for r in results)))
        say(H % (("daemon RssAnon KiB end",) + tuple("%d" % r["anon1"] for r in results)))
        say("")
        say("(helpers: tinycrid's keepers, containerd's shims, which read the cgroups for the"
            " metrics containerd asks them for)")
        missed = False
        t = next((r for r in results if r["runtime"] == "tinycrid"), None)
        c = next((r for r in results if r["runtime"] == "containerd"), None)
        say("")
        say("targets:")
        if t and c:
            for name, _ in CALLS:
                ok = ratios[name] >= LATENCY_TARGET
                missed |= not ok
                say("  %s p99 <= 1/%.0f of containerd's: %s: %s" % (
                    name, LATENCY_TARGET, bpods.fmt_ratio(ratios[name]), "PASS" if ok else "MISS"))
            cr = c["cpu"] / t["cpu"] if t["cpu"] > 0 else float("inf")
            ok = cr >= CPU_TARGET
            missed |= not ok
            say("  daemon CPU <= 1/%.0f of containerd's: %.3f s vs %.3f s = %s: %s" % (
                CPU_TARGET, t["cpu"], c["cpu"], bpods.fmt_ratio(cr), "PASS" if ok else "MISS"))
            tt = t["cpu"] + t["children"] + t["helpers"]
            ct = c["cpu"] + c["children"] + c["helpers"]
            say("  (with children and helpers: %.3f s vs %.3f s = %s)" % (
                tt, ct, bpods.fmt_ratio(ct / tt) if tt > 0 else "-"))
        if t:
            growth = t["anon1"] - t["anon0"]
            ok = growth <= GROWTH_KIB
            missed |= not ok
            say("  no RssAnon growth (tinycrid, at most %d KiB): %+d KiB: %s" % (
                GROWTH_KIB, growth, "PASS" if ok else "MISS"))
        return 1 if missed and self.args.strict else 0

    def run(self):
        self.setup()
        say("workload:   %d pods x %d containers (%s) per runtime; kubelet's polling: %s;"
            " %d s each" % (self.args.pods, self.args.per_pod, " ".join(bpods.SLEEP_ARGV),
                            ", ".join("%s every %gs" % c for c in CALLS), self.args.duration))
        say("")
        results = []
        for rt in self.runtimes:
            pods = self.populate(rt)
            try:
                results.append(self.poll(rt, pods))
            finally:
                netns = bpods.netns_names()
                wall, errors = self.teardown(rt, pods)
                # The pods' cgroups are the caller's to remove (kubelet's): runc leaves them.
                for i in range(self.args.pods):
                    bpods.remove_cgroup("%s/poll-%03d" % (rt.net.cgroup, i))
                errors += self.check_clean(rt, netns)
                say("%-11s %d pods removed in %.1f s%s" % (
                    rt.name + ":", len(pods), wall,
                    "" if not errors else "; PROBLEMS:\n  " + "\n  ".join(errors)))
                if errors:
                    self.failures.append("%s: %s" % (rt.name, "; ".join(errors)))
        rc = self.report(results)
        return 1 if self.failures else rc


def on_sigterm(signum, frame):
    note("%s: stopping" % signal.Signals(signum).name)
    raise SystemExit(128 + signum)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tinycrid", required=True, help="the tinycrid binary")
    ap.add_argument("--rpcload", help="tinycri-rpcload (default: beside --tinycrid)")
    ap.add_argument("--work", required=True, help="an empty directory this run may use")
    ap.add_argument("--pods", type=int, default=50, help="pods per runtime")
    ap.add_argument("--per-pod", type=int, default=2, help="containers per pod")
    ap.add_argument("--duration", type=float, default=120, help="seconds of polling")
    ap.add_argument("--timeout", type=float, default=120, help="deadline of each call, s")
    ap.add_argument("--unload-wait", type=float, default=45,
                    help="wait up to this many seconds after the pulls for tinycrid to unload"
                         " libcurl (0: do not wait)")
    ap.add_argument("--tinycrid-only", action="store_true")
    ap.add_argument("--containerd-only", action="store_true")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()
    if not 1 <= args.pods <= 250 or not 1 <= args.per_pod <= 20:
        ap.error("--pods must be 1..250 (one /24 per runtime) and --per-pod 1..20")
    if args.duration <= 0 or args.timeout <= 0:
        ap.error("--duration and --timeout must be positive")
    if args.tinycrid_only and args.containerd_only:
        ap.error("--tinycrid-only and --containerd-only exclude each other")
    # What bench_pods.Bench reads of its own options.
    args.tinycrid_runtime = "runc"
    args.share_pid = False
    args.counts = [args.pods]
    args.runs = 1
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGHUP, on_sigterm)
    bench = PollBench(args)
    try:
        return bench.run()
    except (bpods.BenchError, bp.BenchError) as e:
        note(str(e))
        return 1
    finally:
        try:
            bench.cleanup()
        finally:
            bench.procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
