// SPDX-License-Identifier: Apache-2.0

// Load mode, for scripts/bench-rpc --client go: closed-loop unary calls with
// kubelet's habits (one ClientConn per connection, many calls in flight on
// it, a 2 s deadline on each call), measuring calls/s and latency.
//
// It takes tinycri-rpcload's options and prints the same machine-readable
// key=value line on stdout, so bench-rpc can use either: N goroutines share
// C ClientConns, and each starts its next call as soon as the last one ends.
// Only calls that end inside the measured window (after the warm-up, for the
// duration) count. A call that got a gRPC status from the server is completed
// (non-OK ones are also errors; UNIMPLEMENTED is counted on its own);
// UNAVAILABLE (connection lost or refused) is a transport error.
//
// Exit status: 0 if at least one call returned OK, 2 if calls were made but
// none succeeded, 1 on usage errors or when the server could not be reached.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"reflect"
	"sort"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	runtimeapi "tinycri/cri"
)

const loadCallTimeout = 2 * time.Second

type loadWorker struct {
	lat       []int64 // nanoseconds, calls completed inside the window
	ok        int
	byCode    [17]int
	transport int
	firstMsg  [17]string
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// invoker returns a function making one call of method on c, through the
// generated stub (directly for the two benchmark methods, else by reflection).
func invoker(c *client, method string) (func(ctx context.Context) error, error) {
	switch method {
	case "Version":
		rt := runtimeapi.NewRuntimeServiceClient(c.conn)
		req := &runtimeapi.VersionRequest{Version: "v1"}
		return func(ctx context.Context) error { _, err := rt.Version(ctx, req); return err }, nil
	case "ListPodSandbox":
		rt := runtimeapi.NewRuntimeServiceClient(c.conn)
		req := &runtimeapi.ListPodSandboxRequest{}
		return func(ctx context.Context) error { _, err := rt.ListPodSandbox(ctx, req); return err }, nil
	}
	fn, reqType, err := c.lookup(method)
	if err != nil {
		return nil, err
	}
	req := reflect.New(reqType.Elem())
	return func(ctx context.Context) error {
		out := fn.Call([]reflect.Value{reflect.ValueOf(ctx), req})
		err, _ := out[1].Interface().(error)
		return err
	}, nil
}

func quantile(sorted []int64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return float64(sorted[i]) / 1e3
}

func loadMain(argv []string) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	sock := fs.String("s", "", "the daemon's unix socket")
	method := fs.String("m", "", "RuntimeService or ImageService method")
	conc := fs.Int("c", 1, "calls in flight")
	conns := fs.Int("n", 1, "ClientConns (HTTP/2 connections)")
	dur := fs.Float64("d", 5, "measured seconds")
	warm := fs.Float64("w", 0, "unmeasured seconds first")
	fs.Float64("drain", 2, "ignored (each call has a 2 s deadline)")
	quiet := fs.Bool("q", false, "no human-readable summary on stderr")
	if err := fs.Parse(argv); err != nil {
		return 1
	}
	if *sock == "" || *method == "" || *conc < 1 || *conns < 1 || *conns > *conc || *dur <= 0 || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: tinycri-goclient load -s SOCKET -m METHOD [-c N] [-n CONNS] [-d S] [-w S] [-q]")
		return 1
	}

	calls := make([]func(context.Context) error, *conns)
	for i := range calls {
		c, err := dial(dialOptions{socket: *sock, maxRecv: 16 << 20})
		if err != nil {
			fmt.Fprintln(os.Stderr, "goclient load:", err)
			return 1
		}
		defer c.conn.Close()
		if calls[i], err = invoker(c, *method); err != nil {
			fmt.Fprintln(os.Stderr, "goclient load:", err)
			return 1
		}
		// Connect first, so dialling is not part of the measure.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = calls[i](ctx)
		cancel()
		if status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded {
			fmt.Fprintf(os.Stderr, "goclient load: cannot reach %s: %v\n", *sock, err)
			return 1
		}
	}

	t0 := time.Now()
	winStart := t0.Add(time.Duration(*warm * float64(time.Second)))
	winEnd := winStart.Add(time.Duration(*dur * float64(time.Second)))
	var cpu0, cpu1 float64
	var cpuWG sync.WaitGroup
	cpuWG.Add(1)
	go func() {
		defer cpuWG.Done()
		time.Sleep(time.Until(winStart))
		cpu0 = cpuSeconds()
		time.Sleep(time.Until(winEnd))
		cpu1 = cpuSeconds()
	}()

	workers := make([]loadWorker, *conc)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func(w *loadWorker, call func(context.Context) error) {
			defer wg.Done()
			for {
				start := time.Now()
				if !start.Before(winEnd) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), loadCallTimeout)
				err := call(ctx)
				cancel()
				end := time.Now()
				if end.Before(winStart) || end.After(winEnd) {
					continue
				}
				code := int(status.Code(err))
				if code == int(codes.Unavailable) {
					w.transport++
					continue
				}
				if code < len(w.byCode) {
					w.byCode[code]++
					if w.firstMsg[code] == "" && code != 0 {
						w.firstMsg[code] = status.Convert(err).Message()
					}
				}
				w.lat = append(w.lat, end.Sub(start).Nanoseconds())
			}
		}(&workers[i], calls[i%*conns])
	}
	wg.Wait()
	cpuWG.Wait()

	var lat []int64
	var byCode [17]int
	var firstMsg [17]string
	transport := 0
	for i := range workers {
		w := &workers[i]
		lat = append(lat, w.lat...)
		transport += w.transport
		for k := range byCode {
			byCode[k] += w.byCode[k]
			if firstMsg[k] == "" {
				firstMsg[k] = w.firstMsg[k]
			}
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	completed := len(lat)
	ok := byCode[0]
	errors := completed - ok + transport
	secs := *dur
	var sum, max int64
	for _, v := range lat {
		sum += v
		if v > max {
			max = v
		}
	}
	mean := 0.0
	if completed > 0 {
		mean = float64(sum) / float64(completed) / 1e3
	}
	rps := float64(completed) / secs
	cpu := (cpu1 - cpu0) / secs

	for k := 1; k < len(byCode); k++ {
		if byCode[k] > 0 {
			fmt.Fprintf(os.Stderr, "goclient: %s: %d x grpc-status %s: %q\n", *method, byCode[k],
				codeName(k), firstMsg[k])
		}
	}
	if transport > 0 {
		fmt.Fprintf(os.Stderr, "goclient: %s: %d x transport error (UNAVAILABLE)\n", *method, transport)
	}
	if !*quiet {
		fmt.Fprintf(os.Stderr, "goclient: %s conc=%d conns=%d: %d calls in %.2f s = %.1f calls/s, "+
			"p50 %.1f us, p99 %.1f us, max %.1f us, client cpu %.0f%%\n", *method, *conc, *conns,
			completed, secs, rps, quantile(lat, 0.5), quantile(lat, 0.99), float64(max)/1e3, cpu*100)
	}
	fmt.Printf("method=%s conc=%d conns=%d duration_s=%.3f calls=%d ok=%d errors=%d unimplemented=%d"+
		" transport_errors=%d protocol_errors=0 rps=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f"+
		" p999_us=%.1f max_us=%.1f mean_us=%.1f client_cpu=%.2f\n", *method, *conc, *conns, secs,
		completed, ok, errors, byCode[codes.Unimplemented], transport, rps, quantile(lat, 0.5),
		quantile(lat, 0.9), quantile(lat, 0.99), quantile(lat, 0.999), float64(max)/1e3, mean, cpu)
	switch {
	case ok > 0:
		return 0
	case completed+transport > 0:
		return 2
	}
	return 1
}
