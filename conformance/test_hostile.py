# SPDX-License-Identifier: Apache-2.0
"""Hostile input, as a probe of 259 hostile calls and some protocol abuse found it
(issue 12): each hole checked the way a user of the runtime would see it. The
parsers themselves are fuzzed (tests/fuzz, scripts/fuzz); these are the holes that
were in the daemon's behaviour.

Needs root (containers, pods, the registries of conftest_images.py).
"""
import os

import grpc
import pytest

from conftest import RPC_TIMEOUT
from test_containers import SLEEP, ctrs, pod_network  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

CALL_TIMEOUT = 60


def fails(fn, *args, **kw):
    with pytest.raises(grpc.RpcError) as ei:
        fn(*args, **kw)
    return ei.value


def raw_call(d, path, payload):
    """A call with hand-made request bytes (what no protobuf library would serialize)."""
    f = d.channel().unary_unary(path, request_serializer=lambda b: b,
                                response_deserializer=lambda b: b)
    return f(payload, timeout=RPC_TIMEOUT)


# --------------------------------------------------------------------------
# 2. Strings with an embedded NUL byte are refused, not cut short
# --------------------------------------------------------------------------

def test_nul_in_a_string_is_refused(ctrs):
    pb, d = ctrs.pb, ctrs.d
    e = fails(d.image.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image=ctrs.image_ref + "\0")),
              timeout=CALL_TIMEOUT)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert "NUL byte in image.image" in e.details()
    # RemoveImage of "<ref>\0" must not remove <ref>.
    e = fails(d.image.RemoveImage, pb.RemoveImageRequest(image=pb.ImageSpec(image=ctrs.image_ref + "\0")),
              timeout=CALL_TIMEOUT)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    st = d.image.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ctrs.image_ref)),
                             timeout=RPC_TIMEOUT)
    assert st.image.id == ctrs.image_id
    # A log path "a\0b.log" must not create "a".
    pod = ctrs.run_pod("nul")
    e = ctrs.create_fails(pod, "c", log_path="a\0b.log")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert "NUL byte in config.log_path" in e.details()
    assert not os.path.lexists(os.path.join(ctrs.log_root, "nul", "a"))
    # A container id "<id>\0xyz" is not <id>.
    cid = ctrs.run(pod, "c", command=SLEEP)
    e = fails(ctrs.status, cid + "\0xyz")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert "NUL byte in container_id" in e.details()
    e = fails(ctrs.stop, cid + "\0")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert ctrs.state(cid) == pb.CONTAINER_RUNNING


def test_invalid_utf8_in_a_string_is_refused(daemon):
    d = daemon()
    # ContainerStatusRequest{container_id: "\xff"}: proto3 strings are UTF-8.
    with pytest.raises(grpc.RpcError) as ei:
        raw_call(d, "/runtime.v1.RuntimeService/ContainerStatus", b"\x0a\x01\xff")
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value
    assert ei.value.details() == "the ContainerStatus request has invalid UTF-8 in container_id"
