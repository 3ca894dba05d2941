/* SPDX-License-Identifier: Apache-2.0 */
/*
 * portforward: the port-forward sessions of the streaming server.
 *
 * SPDY (portforward.k8s.io): for each forwarded connection the client opens
 * an error stream ("streamtype: error", "port", "requestid"), closes its
 * side, then a data stream with the same port and requestid; streams pair
 * by requestid (a pair must be complete within creation_timeout, else both
 * are reset). A bad port or streamtype resets the stream. The daemon
 * connects to localhost:PORT in the pod's network namespace (through the
 * backend: a child enters the namespace, connects, and passes the socket
 * back) and splices both ways with socket backpressure. Connection errors go
 * to the error stream as "error forwarding port P to pod ID, uid : REASON".
 * The pod closing its side FINs the data and error streams; the client's
 * FIN shuts the pod socket's write side; a reset closes the pair.
 *
 * WebSocket (v4.channel.k8s.io, v4.base64.channel.k8s.io, or none): the
 * ports of the CRI request give channel pairs, data 2i and error 2i+1, each
 * starting with the port as two bytes, little-endian; the connection ends
 * when every pair has.
 */
#ifndef TINYCRI_STREAM_PORTFORWARD_H
#define TINYCRI_STREAM_PORTFORWARD_H

struct sconn;
struct stream_backend;
struct stream_request;

void portforward_start(struct sconn *c, struct stream_request *req,
                       const struct stream_backend *be);

#endif
