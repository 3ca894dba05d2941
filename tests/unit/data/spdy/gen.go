// SPDX-License-Identifier: Apache-2.0
// Generates go-client.bin (used by tests/unit/test_spdy.c): frames written by the Go
// spdystream framer that Kubernetes clients use. Debian: golang-github-docker-spdystream-dev.
//   GO111MODULE=off GOPATH=/usr/share/gocode go run gen.go > go-client.bin
//go:build ignore

package main

import (
	"bytes"
	"net/http"
	"os"

	"github.com/docker/spdystream/spdy"
)

func main() {
	var out bytes.Buffer
	f, err := spdy.NewFramer(&out, &bytes.Buffer{})
	if err != nil {
		panic(err)
	}
	for i, t := range []string{"error", "stdin", "stdout", "stderr"} {
		h := http.Header{}
		h.Set("streamtype", t)
		if err := f.WriteFrame(&spdy.SynStreamFrame{StreamId: spdy.StreamId(2*i + 1), Headers: h}); err != nil {
			panic(err)
		}
	}
	if err := f.WriteFrame(&spdy.DataFrame{StreamId: 3, Data: []byte("hello")}); err != nil {
		panic(err)
	}
	if err := f.WriteFrame(&spdy.DataFrame{StreamId: 3, Flags: spdy.DataFlagFin}); err != nil {
		panic(err)
	}
	if err := f.WriteFrame(&spdy.PingFrame{Id: 1}); err != nil {
		panic(err)
	}
	h := http.Header{}
	h.Set("streamtype", "data")
	h.Set("port", "8080")
	h.Set("requestid", "0")
	if err := f.WriteFrame(&spdy.SynStreamFrame{StreamId: 9, Headers: h, CFHeader: spdy.ControlFrameHeader{Flags: spdy.ControlFlagFin}}); err != nil {
		panic(err)
	}
	os.Stdout.Write(out.Bytes())
}
