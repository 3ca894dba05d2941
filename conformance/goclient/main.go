// SPDX-License-Identifier: Apache-2.0

// tinycri-goclient: a CRI client built on grpc-go, the gRPC stack kubelet and
// crictl use, for the conformance suite (conformance/test_goclient.py) and the
// RPC benchmark (scripts/bench-rpc --client go).
//
// It dials the daemon the way kubelet does: the socket path itself is the
// gRPC target (so grpc-go sends it as :authority), a context dialer opens the
// unix socket, and the receive limit is raised to 16 MiB. Every call goes
// through the stubs protoc-gen-go generated from proto/api.proto (package
// tinycri/cri, built by scripts/lib.sh's build_goclient), found by method name.
//
// Modes:
//
//	call METHOD [JSON]  one call on a fresh connection; prints one JSON result line
//	session             JSON commands on stdin, one per line, all on one long-lived
//	                    connection; one JSON result line per command (see session.go)
//	load                closed-loop load for scripts/bench-rpc (see load.go)
//	methods             the RPCs the generated stubs offer, one "Service/Method" a line
//
// A call's result line is {"code": "OK"|"CANCELLED"|..., "code_num": N, "message":
// "...", "reply": {...}, "reply_size": bytes, "elapsed": seconds}; replies are
// jsonpb with the proto field names and default values shown. Exit status: 0
// when the client did its job (whatever the RPC answered), 2 on usage errors.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage: tinycri-goclient [options] call METHOD [JSON]
       tinycri-goclient [options] session
       tinycri-goclient load -s SOCKET -m METHOD [-c N] [-n CONNS] [-d S] [-w S] [-q]
       tinycri-goclient methods

options:
`)
	flag.PrintDefaults()
}

func main() {
	var o dialOptions
	flag.StringVar(&o.socket, "socket", "", "the daemon's unix socket (required for call and session)")
	flag.IntVar(&o.maxRecv, "max-recv", 16<<20, "receive limit in bytes (kubelet: 16 MiB; grpc-go's default is 4 MiB)")
	flag.DurationVar(&o.keepalive, "keepalive", 0, "grpc-go client keepalive: ping after this much idle time (0: off; grpc-go enforces >= 10s)")
	flag.DurationVar(&o.keepaliveTimeout, "keepalive-timeout", 20*time.Second, "close the connection when a keepalive ping is not answered in this time")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline of the call (call mode)")
	flag.Usage = usage
	if len(os.Args) > 1 && os.Args[1] == "load" {
		os.Exit(loadMain(os.Args[2:]))
	}
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		usage()
		os.Exit(2)
	}
	switch args[0] {
	case "methods":
		for _, m := range allMethods() {
			fmt.Println(m)
		}
	case "call":
		if len(args) < 2 || len(args) > 3 || o.socket == "" {
			usage()
			os.Exit(2)
		}
		req := "{}"
		if len(args) == 3 {
			req = args[2]
		}
		c, err := dial(o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "tinycri-goclient:", err)
			os.Exit(2)
		}
		defer c.conn.Close()
		res := c.call(callSpec{Method: args[1], Request: []byte(req), Timeout: timeout.Seconds()})
		emit(os.Stdout, res)
	case "session":
		if len(args) != 1 || o.socket == "" {
			usage()
			os.Exit(2)
		}
		os.Exit(session(o, os.Stdin, os.Stdout))
	default:
		usage()
		os.Exit(2)
	}
}
