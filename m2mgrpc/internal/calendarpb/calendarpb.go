// Package calendarpb is a small gRPC Calendar service for the examples and
// tests, written by hand in the shape protoc-gen-go-grpc generates, with
// protobuf's well-known wrapper messages instead of generated ones:
//
//	service Calendar {
//	  rpc CreateEvent(google.protobuf.StringValue) returns (google.protobuf.StringValue);
//	  rpc ListEvents(google.protobuf.StringValue) returns (stream google.protobuf.StringValue);
//	  rpc Ping(google.protobuf.StringValue) returns (google.protobuf.StringValue);
//	}
package calendarpb

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Full method names of the Calendar service.
const (
	CreateEvent = "/calendar.v1.Calendar/CreateEvent"
	ListEvents  = "/calendar.v1.Calendar/ListEvents"
	Ping        = "/calendar.v1.Calendar/Ping"
)

// Server is the Calendar service's implementation.
type Server interface {
	CreateEvent(ctx context.Context, title string) (string, error)
	ListEvents(ctx context.Context, filter string, send func(string) error) error
	Ping(ctx context.Context) (string, error)
}

// Register registers srv on s.
func Register(s grpc.ServiceRegistrar, srv Server) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "calendar.v1.Calendar",
		HandlerType: (*Server)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "CreateEvent", Handler: unary(CreateEvent, func(ctx context.Context, srv Server, in string) (string, error) {
				return srv.CreateEvent(ctx, in)
			})},
			{MethodName: "Ping", Handler: unary(Ping, func(ctx context.Context, srv Server, _ string) (string, error) {
				return srv.Ping(ctx)
			})},
		},
		Streams: []grpc.StreamDesc{{
			StreamName:    "ListEvents",
			ServerStreams: true,
			Handler: func(srv any, stream grpc.ServerStream) error {
				in := new(wrapperspb.StringValue)
				if err := stream.RecvMsg(in); err != nil {
					return err
				}
				return srv.(Server).ListEvents(stream.Context(), in.GetValue(), func(s string) error {
					return stream.SendMsg(wrapperspb.String(s))
				})
			},
		}},
	}, srv)
}

// unary adapts f to a grpc.MethodDesc handler that runs the interceptor.
func unary(method string, f func(context.Context, Server, string) (string, error)) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, req any) (any, error) {
			out, err := f(ctx, srv.(Server), req.(*wrapperspb.StringValue).GetValue())
			if err != nil {
				return nil, err
			}
			return wrapperspb.String(out), nil
		}
		if interceptor == nil {
			return h(ctx, in)
		}
		return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, h)
	}
}

// Client calls a Calendar service.
type Client struct{ cc grpc.ClientConnInterface }

// NewClient returns a Client over cc.
func NewClient(cc grpc.ClientConnInterface) *Client { return &Client{cc: cc} }

// CreateEvent calls CreateEvent.
func (c *Client) CreateEvent(ctx context.Context, title string, opts ...grpc.CallOption) (string, error) {
	return c.unary(ctx, CreateEvent, title, opts...)
}

// Ping calls Ping.
func (c *Client) Ping(ctx context.Context, opts ...grpc.CallOption) (string, error) {
	return c.unary(ctx, Ping, "", opts...)
}

func (c *Client) unary(ctx context.Context, method, in string, opts ...grpc.CallOption) (string, error) {
	out := new(wrapperspb.StringValue)
	if err := c.cc.Invoke(ctx, method, wrapperspb.String(in), out, opts...); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

// ListEvents calls ListEvents and collects the stream.
func (c *Client) ListEvents(ctx context.Context, filter string, opts ...grpc.CallOption) ([]string, error) {
	stream, err := c.cc.NewStream(ctx, &grpc.StreamDesc{StreamName: "ListEvents", ServerStreams: true}, ListEvents, opts...)
	if err != nil {
		return nil, err
	}
	if err := stream.SendMsg(wrapperspb.String(filter)); err != nil {
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	var out []string
	for {
		m := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, m.GetValue())
	}
}
