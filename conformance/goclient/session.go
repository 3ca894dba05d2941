// SPDX-License-Identifier: Apache-2.0

// Session mode: one ClientConn for the whole run, as kubelet keeps one for
// its life, driven by JSON commands on stdin, one per line. Commands run one
// after the other; each prints exactly one JSON line on stdout:
//
//	{"op": "call", "method": M, "request": {...}, "timeout": S,
//	 "cancel_after": S, "max_recv": N, "omit_reply": B}
//	    -> a call result (see main.go)
//	{"op": "concurrent", "calls": [call, ...]}
//	    -> {"results": [result, ...], "elapsed": S}: every call is started at
//	       once, each in its own goroutine, on the session's connection
//	{"op": "stats"}
//	    -> {"state": "READY"|..., "dials": N, "pings_sent": N, "ping_acks": N,
//	        "keepalive_pings": N, "keepalive_acks": N, "goaways": [{"error_code":
//	        N, "last_stream_id": N, "debug": "..."}], "frames_sent": {...}, ...}
//	       counted over every connection the ClientConn made (conn.go)
//
// A line that is not a valid command gets {"error": "..."}. End of input
// closes the connection and ends the process with status 0.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

type command struct {
	Op    string     `json:"op"`
	Calls []callSpec `json:"calls"`
	callSpec
}

type stateStats struct {
	State string `json:"state"`
	statsSnapshot
}

type concurrentResult struct {
	Results []callResult `json:"results"`
	Elapsed float64      `json:"elapsed"`
}

func session(o dialOptions, in io.Reader, out io.Writer) int {
	c, err := dial(o)
	if err != nil {
		emit(out, map[string]string{"error": err.Error()})
		return 2
	}
	defer c.conn.Close()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var cmd command
		if err := json.Unmarshal(line, &cmd); err != nil {
			emit(out, map[string]string{"error": "bad command: " + err.Error()})
			continue
		}
		switch cmd.Op {
		case "call", "":
			emit(out, c.call(cmd.callSpec))
		case "concurrent":
			emit(out, c.concurrent(cmd.Calls))
		case "stats":
			emit(out, stateStats{State: c.conn.GetState().String(), statsSnapshot: c.stats.snapshot()})
		default:
			emit(out, map[string]string{"error": fmt.Sprintf("unknown op %q", cmd.Op)})
		}
	}
	if err := sc.Err(); err != nil {
		emit(out, map[string]string{"error": "reading commands: " + err.Error()})
		return 2
	}
	return 0
}

// concurrent starts every call at the same moment on the one connection.
func (c *client) concurrent(calls []callSpec) concurrentResult {
	res := concurrentResult{Results: make([]callResult, len(calls))}
	var wg, ready sync.WaitGroup
	gate := make(chan struct{})
	wg.Add(len(calls))
	ready.Add(len(calls))
	for i := range calls {
		go func(i int) {
			defer wg.Done()
			ready.Done()
			<-gate
			res.Results[i] = c.call(calls[i])
		}(i)
	}
	ready.Wait()
	start := time.Now()
	close(gate)
	wg.Wait()
	res.Elapsed = time.Since(start).Seconds()
	return res
}
