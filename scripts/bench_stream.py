#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Streaming benchmark: tinycrid against Debian's containerd (helper of scripts/bench-stream).

Reuses scripts/bench_pods.py for everything but the measurements: one plain-HTTP
docker-registry with the busybox test image, both daemons on private temp roots
(containerd 1.6 with the runc v2 shim, restrict_oom_score_adj, its streaming server
on 127.0.0.1), each with a CNI bridge of its own. Per runtime, one pod with one
container running busybox httpd over a file of --pf-mib MiB, then:

  exec round trip  `crictl exec CTR true`, --execs times in a row (crictl from
                   ../shared/tools or $CRICTL): wall time per call, p50 and p99
                   (the CRI Exec call, the SPDY upgrade, the OCI runtime exec)
  port-forward     `crictl port-forward POD LOCAL:8080`, then one HTTP GET of the
                   file through it: MB/s over the whole body
  idle sessions    --sessions exec sessions (a `cat` on stdin, SPDY, opened with
                   conformance/spdyclient.py and left idle): the daemon's RssAnon
                   before and with them open, KiB per session (containerd's
                   shim is reported beside it; the target is about the daemon)

Prints the tables, the ratios and the targets: exec round trip <= 1/2 of
containerd's (p50), port-forward throughput >= containerd's, <= 16 KiB of daemon
RssAnon per idle session.
"""
import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "conformance"))
import bench_pods  # noqa: E402
import spdyclient  # noqa: E402
from bench_pods import BenchError, note, say  # noqa: E402

HTTPD = ("mkdir -p /www && head -c %d /dev/urandom > /www/big && echo ok > /www/ok && "
         "exec httpd -f -p 8080 -h /www")


def rss_anon(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


class StreamBench(bench_pods.Bench):
    def crictl(self, rt, *args, **kw):
        sock = "unix://" + rt.sock
        return subprocess.run([self.args.crictl, "--runtime-endpoint", sock, "--image-endpoint",
                               sock, "--timeout", "60s"] + list(args), capture_output=True, **kw)

    def workload(self, rt):
        pb = self.api[0]
        cfg = self.pod_config(rt, "stream")
        pod = rt.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=120).pod_sandbox_id
        cc = self.container_config()
        cc.command[:] = ["sh", "-c", HTTPD % (self.args.pf_mib << 20)]
        cid = rt.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod, config=cc, sandbox_config=cfg), timeout=120).container_id
        rt.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=120)
        deadline = time.monotonic() + 120
        while True:
            r = rt.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=[
                "sh", "-c", "test -s /www/ok && netstat -ltn | grep -q :8080"], timeout=10),
                timeout=20)
            if r.exit_code == 0:
                return pod, cid
            if time.monotonic() > deadline:
                raise BenchError("%s: httpd did not come up" % rt.name)
            time.sleep(0.2)

    def exec_rtt(self, rt, cid):
        for _ in range(3):  # warm-up
            self.crictl(rt, "exec", cid, "true")
        times = []
        for _ in range(self.args.execs):
            t0 = time.monotonic()
            r = self.crictl(rt, "exec", cid, "true")
            times.append(time.monotonic() - t0)
            if r.returncode != 0:
                raise BenchError("%s: crictl exec failed: %s" % (rt.name, r.stderr.decode()))
        return pct(times, 50) * 1000, pct(times, 99) * 1000

    def crictl_floor(self, rt):
        """`crictl version` round trips: the client's own cost (start-up, gRPC dial)."""
        times = []
        for _ in range(self.args.execs):
            t0 = time.monotonic()
            self.crictl(rt, "version")
            times.append(time.monotonic() - t0)
        return pct(times, 50) * 1000

    def port_forward(self, rt, pod):
        local = free_port()
        sock = "unix://" + rt.sock
        p = subprocess.Popen([self.args.crictl, "--runtime-endpoint", sock, "--image-endpoint",
                              sock, "port-forward", pod, "%d:8080" % local],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", local), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or p.poll() is not None:
                        raise BenchError("%s: crictl port-forward did not listen" % rt.name)
                    time.sleep(0.1)
            s = socket.create_connection(("127.0.0.1", local), timeout=120)
            t0 = time.monotonic()
            s.sendall(b"GET /big HTTP/1.0\r\n\r\n")
            got = 0
            buf = bytearray(1 << 20)
            while True:
                n = s.recv_into(buf)
                if not n:
                    break
                got += n
            took = time.monotonic() - t0
            s.close()
            want = self.args.pf_mib << 20
            if got < want:
                raise BenchError("%s: port-forward gave %d bytes of %d" % (rt.name, got, want))
            return want / took / 1e6
        finally:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    def idle_sessions(self, rt, cid):
        pb = self.api[0]
        helpers = self.helper_pids(rt)
        time.sleep(1)
        before, hbefore = rss_anon(rt.pid), sum(rss_anon(p) for p in helpers)
        sessions = []
        try:
            for _ in range(self.args.sessions):
                url = rt.rt.Exec(pb.ExecRequest(container_id=cid, cmd=["cat"], stdin=True,
                                                stdout=True), timeout=30).url
                sessions.append(spdyclient.exec_session(url, stdin=True, stderr=False))
            for c, ids in sessions:
                c.data(ids["stdin"], b"x\n")
            for c, ids in sessions:
                c.until(lambda c: bytes(c.streams[ids["stdout"]]) == b"x\n", timeout=60)
            time.sleep(1)
            after, hafter = rss_anon(rt.pid), sum(rss_anon(p) for p in helpers)
        finally:
            for c, _ in sessions:
                c.close()
        return before, after, hafter - hbefore

    def helper_pids(self, rt):
        if isinstance(rt, bench_pods.Containerd):
            return rt.shims(bench_pods.processes())
        return []

    def run(self):
        self.setup()
        say("workload:   one pod, busybox httpd over %d MiB; crictl %s; tinycrid's runtime %s, "
            "containerd's runc" % (self.args.pf_mib, self.args.crictl,
                                   self.args.tinycrid_runtime))
        res = {}
        for rt in self.runtimes:
            pod, cid = self.workload(rt)
            p50, p99 = self.exec_rtt(rt, cid)
            floor = self.crictl_floor(rt)
            mbs = self.port_forward(rt, pod)
            before, after, helpers = self.idle_sessions(rt, cid)
            res[rt.name] = dict(p50=p50, p99=p99, floor=floor, mbs=mbs, before=before, after=after,
                                per=(after - before) / float(self.args.sessions),
                                helpers=helpers)
            say("%-11s exec p50 %.1f ms p99 %.1f ms (%d calls; `crictl version` p50 %.1f ms); "
                "port-forward %.0f MB/s; RssAnon %d KiB idle, %d KiB with %d sessions "
                "(%.1f KiB each)%s" % (
                    rt.name + ":", p50, p99, self.args.execs, floor, mbs, before, after,
                    self.args.sessions, res[rt.name]["per"],
                    "; shim +%d KiB" % helpers if helpers else ""))
        t, c = res.get("tinycrid"), res.get("containerd")
        rc = 0
        if t and c:
            say("")
            say("ratios containerd / tinycrid: exec p50 %.2fx, p99 %.2fx; port-forward "
                "throughput tinycrid / containerd %.2fx; RssAnon per idle session %.1f vs %.1f KiB"
                % (c["p50"] / t["p50"], c["p99"] / t["p99"], t["mbs"] / c["mbs"], t["per"],
                   c["per"]))
            say("exec beyond crictl's own start-up and dial (p50 - `crictl version` p50): "
                "tinycrid %.1f ms, containerd %.1f ms (%.2fx)" % (
                    t["p50"] - t["floor"], c["p50"] - c["floor"],
                    (c["p50"] - c["floor"]) / max(0.1, t["p50"] - t["floor"])))
            checks = [("exec round trip p50 <= 1/2 of containerd's", t["p50"] * 2 <= c["p50"]),
                      ("port-forward throughput >= containerd's", t["mbs"] >= c["mbs"]),
                      ("<= 16 KiB daemon RssAnon per idle session", t["per"] <= 16)]
            for what, ok in checks:
                say("  target %s: %s" % (what, "met" if ok else "MISSED"))
                if not ok and self.args.strict:
                    rc = 1
        return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tinycrid", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--crictl", required=True)
    ap.add_argument("--execs", type=int, default=30)
    ap.add_argument("--pf-mib", type=int, default=256)
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--tinycrid-runtime", choices=sorted(bench_pods.OCI_RUNTIMES),
                    default="runc", help="tinycrid's OCI runtime (containerd always uses runc)")
    ap.add_argument("--tinycrid-only", action="store_true")
    ap.add_argument("--containerd-only", action="store_true")
    ap.add_argument("--strict", action="store_true")
    args = ap.parse_args()
    # What bench_pods.Bench reads.
    args.share_pid = False
    args.unload_wait = 0
    args.timeout = 120
    signal.signal(signal.SIGTERM, bench_pods.on_sigterm)
    signal.signal(signal.SIGHUP, bench_pods.on_sigterm)
    bench = StreamBench(args)
    try:
        return bench.run()
    except (BenchError, bench_pods.bp.BenchError) as e:
        note(str(e))
        return 1
    finally:
        try:
            bench.cleanup()
        finally:
            bench.procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
