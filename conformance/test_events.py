# SPDX-License-Identifier: Apache-2.0
"""GetContainerEvents as kubelet's evented PLEG uses it: a server stream of
CONTAINER_CREATED, STARTED, STOPPED and DELETED events, each with the pod's status
and its containers' statuses, to several subscribers at once; and what happens to a
subscriber that stops reading (cut off at a bounded backlog, the daemon's memory
does not grow). Real pods and runc (the `ctrs` fixture of test_containers.py).
Needs root."""
import os
import queue
import socket
import threading
import time

import grpc
import pytest

import h2raw
from conftest import wait_until
from test_containers import SLEEP, ctrs, is_sanitized, pod_network, rss_anon_kib  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

KiB = 1024
MiB = 1024 * KiB
BACKLOG_MAX = 1 * MiB  # EVENTS_BACKLOG_MAX in src/cri/events_service.h


class Subscriber:
    """A GetContainerEvents call on its own connection, read by a thread into a queue."""

    def __init__(self, ctrs):
        self.pb = ctrs.pb
        ch = ctrs.d.channel()
        self.call = ctrs.api.grpc.RuntimeServiceStub(ch).GetContainerEvents(
            ctrs.pb.GetEventsRequest())
        self.call.initial_metadata()  # the daemon sends headers once the subscription is in
        self.events = queue.Queue()
        self.error = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for ev in self.call:
                self.events.put(ev)
        except grpc.RpcError as e:
            self.error = e

    def next(self, timeout=30):
        return self.events.get(timeout=timeout)

    def take(self, n, timeout=60):
        return [self.next(timeout) for _ in range(n)]

    def cancel(self):
        self.call.cancel()
        self.thread.join(10)


def kinds(pb, events):
    names = {pb.CONTAINER_CREATED_EVENT: "CREATED", pb.CONTAINER_STARTED_EVENT: "STARTED",
             pb.CONTAINER_STOPPED_EVENT: "STOPPED", pb.CONTAINER_DELETED_EVENT: "DELETED"}
    return [names[e.container_event_type] for e in events]


def test_lifecycle_seen_in_order_by_two_subscribers(ctrs):
    pb = ctrs.pb
    pod = ctrs.run_pod("events")
    subs = [Subscriber(ctrs), Subscriber(ctrs)]
    t0 = time.time_ns()
    cid = ctrs.create(pod, "c", command=SLEEP)
    ctrs.start(cid)
    ctrs.stop(cid)
    ctrs.remove(cid)
    for sub in subs:
        evs = sub.take(4)
        assert kinds(pb, evs) == ["CREATED", "STARTED", "STOPPED", "DELETED"]
        assert all(e.container_id == cid for e in evs)
        times = [e.created_at for e in evs]
        assert times == sorted(times) and times[0] >= t0
        for e in evs:
            assert e.pod_sandbox_status.id == pod
            assert e.pod_sandbox_status.state == pb.SANDBOX_READY
            assert e.pod_sandbox_status.metadata.name == "events"
        states = [{s.id: s.state for s in e.containers_statuses} for e in evs]
        assert states[0] == {cid: pb.CONTAINER_CREATED}
        assert states[1] == {cid: pb.CONTAINER_RUNNING}
        assert states[2] == {cid: pb.CONTAINER_EXITED}
        assert states[3] == {}  # gone from its pod
        assert evs[2].containers_statuses[0].exit_code == 137
        assert sub.events.empty()
    for sub in subs:
        sub.cancel()
    # Nothing is left subscribed: a new container's events only reach a new subscriber.
    late = Subscriber(ctrs)
    cid2 = ctrs.create(pod, "d", command=SLEEP)
    assert kinds(pb, [late.next()]) == ["CREATED"] and subs[0].events.empty()
    late.cancel()
    ctrs.remove(cid2)


def test_pod_status_carries_its_containers_statuses(ctrs):
    """What the evented PLEG reads on relist: PodSandboxStatus.containers_statuses."""
    pb = ctrs.pb
    pod = ctrs.run_pod("withctrs")
    a = ctrs.run(pod, "a", command=SLEEP)
    b = ctrs.create(pod, "b", command=SLEEP)
    other = ctrs.run_pod("other")
    ctrs.create(other, "x", command=SLEEP)
    resp = ctrs.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod), timeout=10)
    got = {s.id: s for s in resp.containers_statuses}
    assert set(got) == {a, b}
    assert got[a].state == pb.CONTAINER_RUNNING and got[b].state == pb.CONTAINER_CREATED
    assert got[a].metadata.name == "a" and got[a].image_ref == ctrs.status(a).status.image_ref
    assert resp.timestamp > 0


def big_annotations(tag):
    return {"note-%d" % i: (tag + "x" * 6 * KiB) for i in range(10)}  # ~60 KiB per container


def churn(ctrs, pod, ids):
    """Start, stop, remove and re-create the containers: 4 events each, each event carrying
    the statuses (and the big annotations) of every container of the pod."""
    for cid in ids:
        ctrs.start(cid)
    for cid in ids:
        ctrs.stop(cid)
    for cid in ids:
        ctrs.remove(cid)
    return [ctrs.create(pod, "big%d" % i, command=SLEEP, annotations=big_annotations(str(i)))
            for i in range(len(ids))]


def test_subscriber_that_stops_reading_is_cut_off_and_memory_stays_bounded(ctrs):
    pb = ctrs.pb
    pod = ctrs.run_pod("slowsub")
    ids = [ctrs.create(pod, "big%d" % i, command=SLEEP, annotations=big_annotations(str(i)))
           for i in range(8)]
    reader = Subscriber(ctrs)
    # A first round with only a reading subscriber: the daemon's memory settles.
    ids = churn(ctrs, pod, ids)
    assert len(reader.take(32)) == 32
    before = rss_anon_kib(ctrs.d.pid)

    # A subscriber whose client never reads: it lets no byte of data through (window 0).
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(ctrs.d.socket)
    raw = h2raw.Conn(sock)
    raw.start(h2raw.settings((h2raw.SETTINGS_INITIAL_WINDOW_SIZE, 0)))
    raw.send(h2raw.frame(h2raw.HEADERS, h2raw.END_HEADERS, 1,
                         h2raw.grpc_headers("/runtime.v1.RuntimeService/GetContainerEvents")))
    raw.send(h2raw.frame(h2raw.DATA, h2raw.END_STREAM, 1, h2raw.grpc_message(b"")))
    wait_until(lambda: "subscribers=2" in ctrs.d.stderr_text(), 10,
               what="the raw subscriber to join")

    # Each event of this pod is ~0.5 MiB: 32 of them are far past the backlog cap.
    ids = churn(ctrs, pod, ids)
    evs = reader.take(32)
    assert kinds(pb, evs[:8]) == ["STARTED"] * 8 and kinds(pb, evs[-8:]) == ["CREATED"] * 8
    assert "container events subscriber too slow, cut off" in ctrs.d.stderr_text()

    # The raw client is reset with ENHANCE_YOUR_CALM (gRPC clients: RESOURCE_EXHAUSTED).
    sock.settimeout(10)
    assert raw.wait_stream(1)
    assert raw.resets.get(1) == 0xB, (raw.resets, raw.headers.get(1))
    sock.close()
    if not is_sanitized(ctrs.d.binary):
        grown = rss_anon_kib(ctrs.d.pid) - before
        # At most the backlog (and the allocator's slack); ~16 MiB went past it.
        assert grown * KiB < BACKLOG_MAX + 3 * MiB, grown
    reader.cancel()
    for cid in ids:
        ctrs.remove(cid)


def test_too_many_subscribers_and_shutdown(ctrs):
    pb = ctrs.pb
    subs = [Subscriber(ctrs) for _ in range(64)]
    with pytest.raises(grpc.RpcError) as ei:
        list(ctrs.rt.GetContainerEvents(pb.GetEventsRequest(), timeout=10))
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "64 subscribers" in ei.value.details()
    for s in subs[1:]:
        s.cancel()
    # A daemon stopping ends the streams at once (UNAVAILABLE), without waiting for them.
    ctrs.cleanup()
    t0 = time.monotonic()
    assert ctrs.d.stop() == 0
    assert time.monotonic() - t0 < 5
    subs[0].thread.join(10)
    assert subs[0].error is not None
    assert subs[0].error.code() == grpc.StatusCode.UNAVAILABLE, subs[0].error
