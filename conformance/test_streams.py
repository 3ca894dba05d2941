# SPDX-License-Identifier: Apache-2.0
"""Streamed lists (StreamPodSandboxes, StreamContainers, StreamContainerStats,
StreamPodSandboxStats, StreamPodSandboxMetrics, StreamImages) and what the List calls
do when their reply would not fit the message limit.

The 5,000 container records are written to disk before the daemon starts, exactly as
the daemon persists them, and the daemon loads them as it loads any node's records
after a restart: no test-only way into the daemon. The containers are EXITED (no
keeper, no process) and their 1,000 pods use the host's network and IPC namespaces,
so they stay READY without any namespace pinned. The daemon's max_send_message_size
is 64 KiB so that the lists are far over it. Needs no root."""
import base64
import json
import os
import time

import grpc
import pytest

LIMIT = 64 * 1024
N_PODS = 1000
PER_POD = 5
RPC = 60.0


def hexid(kind, i):
    return ("%s%058d" % ({"pod": "aaaaaa", "ctr": "cccccc"}[kind], i))[-64:]


def write_records(d, pb):
    now = time.time_ns()
    os.makedirs(os.path.join(d.root, "sandboxes"), mode=0o700)
    os.makedirs(os.path.join(d.root, "containers"), mode=0o700)
    for p in range(N_PODS):
        pid = hexid("pod", p)
        cfg = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="pod-%d" % p, uid="uid-%d" % p,
                                           namespace="bulk"),
            labels={"app": "bulk", "shard": str(p % 10)},
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE, ipc=pb.NODE,
                                                     pid=pb.CONTAINER))))
        rec = {"version": 1, "id": pid, "state": "READY", "created": now, "handler": "",
               "config": base64.b64encode(cfg.SerializeToString()).decode(), "paths": {},
               "cgroup_parent": "", "ips": [], "network_ready": False, "pod_init_pid": 0,
               "pod_init_start": 0}
        with open(os.path.join(d.root, "sandboxes", pid + ".json"), "w") as f:
            json.dump(rec, f)
        for c in range(PER_POD):
            cid = hexid("ctr", p * PER_POD + c)
            ccfg = pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="c%d" % c),
                image=pb.ImageSpec(image="example.com/bulk:1"),
                labels={"app": "bulk", "n": str(c)},
                annotations={"note": "a record written for the streaming test " * 2})
            rec = {"id": cid, "sandboxId": pid, "name": "c%d" % c, "attempt": 0,
                   "config": base64.b64encode(ccfg.SerializeToString()).decode(),
                   "imageRef": "example.com/bulk:1", "imageId": "sha256:" + "b" * 64,
                   "chainIds": [], "runtime": "runc", "state": "EXITED", "createdAt": now,
                   "startedAt": now, "finishedAt": now, "exitCode": 0, "reason": "Completed",
                   "message": "", "logPath": "", "stopSignal": 15, "pid": 0, "keeperPid": 0,
                   "rootDir": os.path.join(d.root, "containers", cid),
                   "stateDir": os.path.join(d.state, "ctr", cid)}
            with open(os.path.join(d.root, "containers", cid + ".json"), "w") as f:
                json.dump(rec, f)


@pytest.fixture(scope="module")
def bulk(request, tinycrid, api):
    from conftest import Daemon
    d = Daemon(tinycrid, api, {"server": {"max_send_message_size": str(LIMIT),
                                          "log_level": "info"}})
    write_records(d, api.pb2)
    d.start()
    yield d
    problem = d.teardown()
    d.cleanup_files()
    assert problem is None, problem


def stream(d, method, req, resp_cls):
    """Every message of a server-streaming call, serialized sizes too."""
    call = d.channel().unary_stream(method, request_serializer=type(req).SerializeToString,
                                    response_deserializer=lambda b: (len(b), resp_cls.FromString(b)))
    return list(call(req, timeout=RPC))


CASES = [
    # (List, Stream, item field of the Stream reply, id of an item, expected count)
    ("ListPodSandbox", "StreamPodSandboxes", "pod_sandboxes", lambda i: i.id, N_PODS),
    ("ListContainers", "StreamContainers", "containers", lambda i: i.id, N_PODS * PER_POD),
    ("ListContainerStats", "StreamContainerStats", "container_stats",
     lambda i: i.attributes.id, N_PODS * PER_POD),
    ("ListPodSandboxStats", "StreamPodSandboxStats", "pod_sandbox_stats",
     lambda i: i.attributes.id, N_PODS),
    ("ListPodSandboxMetrics", "StreamPodSandboxMetrics", "pod_sandbox_metrics",
     lambda i: i.pod_sandbox_id, N_PODS),
]


@pytest.mark.parametrize("list_name,stream_name,field,key,count", CASES,
                         ids=[c[1] for c in CASES])
def test_stream_in_chunks_under_the_limit(bulk, api, list_name, stream_name, field, key, count):
    pb = api.pb2
    svc = "/runtime.v1.RuntimeService/"
    req_cls = getattr(pb, stream_name + "Request")
    resp_cls = getattr(pb, stream_name + "Response")
    # The List call refuses, naming the call that can carry it.
    list_req = getattr(pb, (list_name + "Request").replace("ListPodSandboxRequest",
                                                           "ListPodSandboxRequest"))()
    call = bulk.channel().unary_unary(svc + list_name,
                                      request_serializer=type(list_req).SerializeToString,
                                      response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as ei:
        call(list_req, timeout=RPC)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value.details()
    assert "use %s" % stream_name in ei.value.details()
    # The stream carries every record once, in messages under the limit, none empty.
    msgs = stream(bulk, svc + stream_name, req_cls(), resp_cls)
    assert len(msgs) > 1
    seen = []
    for size, m in msgs:
        assert size <= LIMIT
        items = getattr(m, field)
        assert len(items) >= 1
        seen += [key(i) for i in items]
    assert len(seen) == count and len(set(seen)) == count


def test_streams_take_the_list_filters(bulk, api):
    pb = api.pb2
    svc = "/runtime.v1.RuntimeService/"
    pod = hexid("pod", 7)
    msgs = stream(bulk, svc + "StreamContainers",
                  pb.StreamContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=pod)),
                  pb.StreamContainersResponse)
    assert sorted(c.id for _, m in msgs for c in m.containers) == \
        sorted(hexid("ctr", 7 * PER_POD + c) for c in range(PER_POD))
    msgs = stream(bulk, svc + "StreamPodSandboxes",
                  pb.StreamPodSandboxesRequest(filter=pb.PodSandboxFilter(
                      label_selector={"shard": "3"})),
                  pb.StreamPodSandboxesResponse)
    assert len([p for _, m in msgs for p in m.pod_sandboxes]) == N_PODS // 10
    msgs = stream(bulk, svc + "StreamContainerStats",
                  pb.StreamContainerStatsRequest(filter=pb.ContainerStatsFilter(
                      label_selector={"n": "2"})),
                  pb.StreamContainerStatsResponse)
    assert len([s for _, m in msgs for s in m.container_stats]) == N_PODS
    msgs = stream(bulk, svc + "StreamPodSandboxStats",
                  pb.StreamPodSandboxStatsRequest(filter=pb.PodSandboxStatsFilter(id=pod)),
                  pb.StreamPodSandboxStatsResponse)
    [(_, m)] = msgs
    [ps] = m.pod_sandbox_stats
    assert ps.attributes.id == pod and len(ps.linux.containers) == PER_POD
    # Nothing matches: the stream ends at once, with no message (each holds at least one).
    assert stream(bulk, svc + "StreamContainers",
                  pb.StreamContainersRequest(filter=pb.ContainerFilter(id="0123")),
                  pb.StreamContainersResponse) == []
    # The lists that fit still come whole.
    small = pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=pod))
    assert len(bulk.runtime.ListContainers(small, timeout=RPC).containers) == PER_POD


def test_stream_images(daemon, api):
    """Six imported images, each with 60 long tags (the import keeps 64 at most): their
    records add up past a 16 KiB limit."""
    limit = 16 * 1024
    import imagebuild as ib
    from conftest import wait_until
    pb = api.pb2
    d = daemon(start=False)
    import_dir = os.path.join(d.tmp, "import")
    os.mkdir(import_dir)
    want = {}
    for n in range(6):
        img = ib.busybox_image(Labels={"tinycri.test": "stream-%d" % n})
        tags = ["registry.invalid/tinycri/streamed-images/number-%d/with-a-long-name:tag-%03d" % (n, t)
                for t in range(60)]
        want[img.id] = set(tags)
        with open(os.path.join(import_dir, "img%d.tar" % n), "wb") as f:
            f.write(ib.docker_save_archive(img, tags))
    d.write_config({"image": {"import_dir": import_dir},
                    "server": {"max_send_message_size": str(limit)}})
    d.start()
    svc = "/runtime.v1.ImageService/"

    def listed():
        msgs = stream(d, svc + "StreamImages", pb.StreamImagesRequest(), pb.StreamImagesResponse)
        return msgs, {i.id: set(i.repo_tags) for _, m in msgs for i in m.images}

    wait_until(lambda: len(listed()[1]) == 6, 60, interval=0.5, what="the six imports")
    msgs, got = listed()
    assert got == want
    assert len(msgs) > 1 and all(size <= limit and len(m.images) >= 1 for size, m in msgs)
    with pytest.raises(grpc.RpcError) as ei:
        d.image.ListImages(pb.ListImagesRequest(), timeout=RPC)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ListImages" in ei.value.details() and "use StreamImages" in ei.value.details()
    # The filter: one image, by a tag.
    msgs = stream(d, svc + "StreamImages", pb.StreamImagesRequest(filter=pb.ImageFilter(
        image=pb.ImageSpec(image=sorted(want[next(iter(want))])[0]))), pb.StreamImagesResponse)
    assert [i.id for _, m in msgs for i in m.images] == [next(iter(want))]


def test_stream_with_nothing_sends_no_message(daemon, api):
    pb = api.pb2
    d = daemon()
    for svc, name in (("ImageService", "StreamImages"), ("RuntimeService", "StreamContainers"),
                      ("RuntimeService", "StreamPodSandboxes"),
                      ("RuntimeService", "StreamPodSandboxMetrics")):
        req = getattr(pb, name + "Request")()
        assert stream(d, "/runtime.v1.%s/%s" % (svc, name), req,
                      getattr(pb, name + "Response")) == []
