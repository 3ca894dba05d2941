// SPDX-License-Identifier: Apache-2.0

// One call through the generated stubs, chosen by method name, with a JSON
// request in and a JSON result out.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/golang/protobuf/jsonpb"
	"github.com/golang/protobuf/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	runtimeapi "tinycri/cri"
)

// The generated client interfaces, by service name.
var serviceTypes = map[string]reflect.Type{
	"RuntimeService": reflect.TypeOf((*runtimeapi.RuntimeServiceClient)(nil)).Elem(),
	"ImageService":   reflect.TypeOf((*runtimeapi.ImageServiceClient)(nil)).Elem(),
}

// allMethods lists "Service/Method" for every RPC the generated code offers.
func allMethods() []string {
	var out []string
	for svc, t := range serviceTypes {
		for i := 0; i < t.NumMethod(); i++ {
			out = append(out, svc+"/"+t.Method(i).Name)
		}
	}
	sort.Strings(out)
	return out
}

// stubs binds the generated clients to one ClientConn.
func (c *client) stub(service string) reflect.Value {
	switch service {
	case "RuntimeService":
		return reflect.ValueOf(runtimeapi.NewRuntimeServiceClient(c.conn))
	case "ImageService":
		return reflect.ValueOf(runtimeapi.NewImageServiceClient(c.conn))
	}
	panic("unknown service " + service)
}

// lookup finds METHOD or SERVICE/METHOD; the stub method takes (ctx, *Req, ...CallOption).
func (c *client) lookup(name string) (reflect.Value, reflect.Type, error) {
	svc, m := "", name
	if i := strings.IndexByte(name, '/'); i >= 0 {
		svc, m = name[:i], name[i+1:]
	}
	for s, t := range serviceTypes {
		if svc != "" && svc != s {
			continue
		}
		if meth, ok := t.MethodByName(m); ok {
			return c.stub(s).MethodByName(m), meth.Type.In(1), nil
		}
	}
	return reflect.Value{}, nil, fmt.Errorf("no such method in the generated stubs: %s", name)
}

type callSpec struct {
	Method      string          `json:"method"`
	Request     json.RawMessage `json:"request"`
	Timeout     float64         `json:"timeout"`      // seconds; <= 0: 10 s
	CancelAfter float64         `json:"cancel_after"` // seconds; > 0: cancel the call then
	MaxRecv     int             `json:"max_recv"`     // > 0: this call's receive limit
	OmitReply   bool            `json:"omit_reply"`   // only code, message and reply_size
}

type callResult struct {
	Method    string            `json:"method"`
	Code      string            `json:"code,omitempty"`
	CodeNum   int               `json:"code_num"`
	Message   string            `json:"message"`
	Reply     json.RawMessage   `json:"reply,omitempty"`
	Replies   []json.RawMessage `json:"replies,omitempty"` // server-streaming methods
	ReplySize int               `json:"reply_size"`
	Elapsed   float64           `json:"elapsed"`
	Error     string            `json:"error,omitempty"` // the client could not make the call
}

// Status code names as grpc.StatusCode spells them in Python.
var codeNames = []string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
	"UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

func codeName(n int) string {
	if n >= 0 && n < len(codeNames) {
		return codeNames[n]
	}
	return fmt.Sprintf("CODE_%d", n)
}

var marshaler = jsonpb.Marshaler{OrigName: true, EmitDefaults: true}

func (c *client) call(spec callSpec) callResult {
	res := callResult{Method: spec.Method}
	fn, reqType, err := c.lookup(spec.Method)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	req := reflect.New(reqType.Elem())
	raw := spec.Request
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		raw = []byte("{}")
	}
	if err := jsonpb.Unmarshal(bytes.NewReader(raw), req.Interface().(proto.Message)); err != nil {
		res.Error = fmt.Sprintf("request for %s: %v", spec.Method, err)
		return res
	}
	timeout := time.Duration(spec.Timeout * float64(time.Second))
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if spec.CancelAfter > 0 {
		t := time.AfterFunc(time.Duration(spec.CancelAfter*float64(time.Second)), cancel)
		defer t.Stop()
	}
	var opts []grpc.CallOption
	if spec.MaxRecv > 0 {
		opts = append(opts, grpc.MaxCallRecvMsgSize(spec.MaxRecv))
	}
	args := []reflect.Value{reflect.ValueOf(ctx), req}
	for _, o := range opts {
		args = append(args, reflect.ValueOf(o))
	}

	start := time.Now()
	out := fn.Call(args)
	var replies []proto.Message
	err, _ = out[1].Interface().(error)
	if err == nil {
		if m, ok := out[0].Interface().(proto.Message); ok {
			replies = append(replies, m)
		} else {
			// A server-streaming method: read until the server ends the stream.
			stream := out[0]
			recv := stream.MethodByName("Recv")
			for {
				r := recv.Call(nil)
				if e, _ := r[1].Interface().(error); e != nil {
					if e != io.EOF {
						err = e
					}
					break
				}
				replies = append(replies, r[0].Interface().(proto.Message))
			}
		}
	}
	res.Elapsed = time.Since(start).Seconds()

	st := status.Convert(err)
	res.CodeNum = int(st.Code())
	res.Code = codeName(res.CodeNum)
	res.Message = st.Message()
	for _, m := range replies {
		res.ReplySize += proto.Size(m)
		if spec.OmitReply {
			continue
		}
		s, merr := marshaler.MarshalToString(m)
		if merr != nil {
			res.Error = fmt.Sprintf("reply of %s to JSON: %v", spec.Method, merr)
			return res
		}
		if out[0].Kind() == reflect.Ptr {
			res.Reply = json.RawMessage(s)
		} else {
			res.Replies = append(res.Replies, json.RawMessage(s))
		}
	}
	return res
}

func emit(w io.Writer, v interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	b = append(b, '\n')
	w.Write(b)
}
