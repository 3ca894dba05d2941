// SPDX-License-Identifier: Apache-2.0

// The connection: kubelet's dial options, and a net.Conn wrapper that reads
// the HTTP/2 frame headers going each way so tests can see what grpc-go and
// the daemon actually sent (keepalive PINGs and their ACKs, GOAWAYs and their
// error codes, how many times the ClientConn dialled).
package main

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

type dialOptions struct {
	socket           string
	maxRecv          int
	keepalive        time.Duration
	keepaliveTimeout time.Duration
}

type client struct {
	conn  *grpc.ClientConn
	stats *wireStats
}

// dial returns at once, as kubelet's does: the connection is made by the
// first call, and made again by grpc-go whenever it is lost.
func dial(o dialOptions) (*client, error) {
	st := &wireStats{}
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "unix", addr)
		if err != nil {
			st.noteDialError()
			return nil, err
		}
		return st.wrap(nc), nil
	}
	opts := []grpc.DialOption{
		grpc.WithInsecure(),
		grpc.WithContextDialer(dialer),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(o.maxRecv)),
	}
	if o.keepalive > 0 {
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                o.keepalive,
			Timeout:             o.keepaliveTimeout,
			PermitWithoutStream: true,
		}))
	}
	// The target is the bare socket path, as kubelet passes it: grpc-go's
	// passthrough resolver hands it to the dialer and sends it as :authority.
	conn, err := grpc.Dial(o.socket, opts...)
	if err != nil {
		return nil, err
	}
	return &client{conn: conn, stats: st}, nil
}

// HTTP/2 frame types and flags (RFC 9113 section 6).
const (
	frameData         = 0x0
	framePing         = 0x6
	frameGoaway       = 0x7
	flagAck           = 0x1
	clientPrefaceSize = 24 // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

var frameNames = []string{"DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS",
	"PUSH_PROMISE", "PING", "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"}

func frameName(t byte) string {
	if int(t) < len(frameNames) {
		return frameNames[t]
	}
	return "UNKNOWN"
}

// goawayInfo is one GOAWAY frame the daemon sent.
type goawayInfo struct {
	LastStreamID uint32 `json:"last_stream_id"`
	ErrorCode    uint32 `json:"error_code"`
	Debug        string `json:"debug"`
}

// wireStats counts frames over every connection the ClientConn made.
type wireStats struct {
	mu         sync.Mutex
	dials      int
	dialErrors int
	sent       map[string]int
	received   map[string]int
	pingsSent  int // PING frames without ACK from the client (keepalive or BDP)
	pingAcks   int // PING ACKs from the daemon
	kaSent     int // keepalive PINGs: grpc-go sends those with 8 zero bytes (BDP ones are not)
	kaAcks     int // ACKs echoing a keepalive PING's payload
	serverPing int // PINGs the daemon started
	goaways    []goawayInfo
	closedEOF  int // connections the daemon closed (read returned an error)
}

// statsSnapshot is what the session's "stats" command prints.
type statsSnapshot struct {
	Dials          int            `json:"dials"`
	DialErrors     int            `json:"dial_errors"`
	FramesSent     map[string]int `json:"frames_sent"`
	FramesReceived map[string]int `json:"frames_received"`
	PingsSent      int            `json:"pings_sent"`
	PingAcks       int            `json:"ping_acks"`
	KeepalivePings int            `json:"keepalive_pings"`
	KeepaliveAcks  int            `json:"keepalive_acks"`
	ServerPings    int            `json:"server_pings"`
	Goaways        []goawayInfo   `json:"goaways"`
	ConnsClosed    int            `json:"conns_closed"` // connections whose reading ended (either side closed)
}

func (s *wireStats) noteDialError() {
	s.mu.Lock()
	s.dialErrors++
	s.mu.Unlock()
}

func (s *wireStats) snapshot() statsSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := statsSnapshot{Dials: s.dials, DialErrors: s.dialErrors, PingsSent: s.pingsSent,
		PingAcks: s.pingAcks, KeepalivePings: s.kaSent, KeepaliveAcks: s.kaAcks, ServerPings: s.serverPing, ConnsClosed: s.closedEOF,
		FramesSent: map[string]int{}, FramesReceived: map[string]int{},
		Goaways: append([]goawayInfo{}, s.goaways...)}
	for k, v := range s.sent {
		snap.FramesSent[k] = v
	}
	for k, v := range s.received {
		snap.FramesReceived[k] = v
	}
	return snap
}

func (s *wireStats) wrap(nc net.Conn) net.Conn {
	s.mu.Lock()
	s.dials++
	if s.sent == nil {
		s.sent = map[string]int{}
		s.received = map[string]int{}
	}
	s.mu.Unlock()
	c := &countingConn{Conn: nc, st: s}
	c.out.skip = clientPrefaceSize
	c.out.onFrame = func(t, flags byte, payload []byte) { s.onFrame(true, t, flags, payload) }
	c.in.onFrame = func(t, flags byte, payload []byte) { s.onFrame(false, t, flags, payload) }
	return c
}

func (s *wireStats) onFrame(out bool, t, flags byte, payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if out {
		s.sent[frameName(t)]++
		if t == framePing && flags&flagAck == 0 {
			s.pingsSent++
			if isZeroPing(payload) {
				s.kaSent++
			}
		}
		return
	}
	s.received[frameName(t)]++
	switch {
	case t == framePing && flags&flagAck != 0:
		s.pingAcks++
		if isZeroPing(payload) {
			s.kaAcks++
		}
	case t == framePing:
		s.serverPing++
	case t == frameGoaway && len(payload) >= 8:
		s.goaways = append(s.goaways, goawayInfo{
			LastStreamID: binary.BigEndian.Uint32(payload[0:4]) & 0x7fffffff,
			ErrorCode:    binary.BigEndian.Uint32(payload[4:8]),
			Debug:        string(payload[8:]),
		})
	}
}

// isZeroPing tells grpc-go's keepalive PINGs (http2_client.go: &ping{data: [8]byte{}})
// from its BDP-estimation PINGs, which carry a fixed non-zero payload.
func isZeroPing(payload []byte) bool {
	if len(payload) != 8 {
		return false
	}
	for _, b := range payload {
		if b != 0 {
			return false
		}
	}
	return true
}

// frameParser follows a byte stream frame by frame. Only PING and GOAWAY
// payloads are kept (up to keepMax bytes); others are skipped.
type frameParser struct {
	skip    int // bytes still to skip (the client preface, then payloads)
	hdr     [9]byte
	hdrLen  int
	typ     byte
	flags   byte
	left    int // payload bytes still to come
	payload []byte
	onFrame func(t, flags byte, payload []byte)
}

const keepMax = 512

func (p *frameParser) feed(b []byte) {
	for len(b) > 0 {
		if p.skip > 0 {
			n := min(p.skip, len(b))
			p.skip -= n
			b = b[n:]
			continue
		}
		if p.left > 0 {
			n := min(p.left, len(b))
			if (p.typ == framePing || p.typ == frameGoaway) && len(p.payload) < keepMax {
				p.payload = append(p.payload, b[:min(n, keepMax-len(p.payload))]...)
			}
			p.left -= n
			b = b[n:]
			if p.left == 0 {
				p.onFrame(p.typ, p.flags, p.payload)
			}
			continue
		}
		n := copy(p.hdr[p.hdrLen:], b)
		p.hdrLen += n
		b = b[n:]
		if p.hdrLen < len(p.hdr) {
			return
		}
		p.hdrLen = 0
		p.left = int(p.hdr[0])<<16 | int(p.hdr[1])<<8 | int(p.hdr[2])
		p.typ, p.flags = p.hdr[3], p.hdr[4]
		p.payload = p.payload[:0]
		if p.left == 0 {
			p.onFrame(p.typ, p.flags, nil)
		}
	}
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

// countingConn feeds what passes through it to two frame parsers. grpc-go
// reads from one goroutine and writes from another, so each parser has one user.
type countingConn struct {
	net.Conn
	st      *wireStats
	in, out frameParser
	lost    sync.Once
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.in.feed(b[:n])
	if err != nil {
		c.lost.Do(func() {
			c.st.mu.Lock()
			c.st.closedEOF++
			c.st.mu.Unlock()
		})
	}
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out.feed(b[:n])
	return n, err
}
