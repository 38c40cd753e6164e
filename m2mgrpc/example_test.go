package m2mgrpc_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"strings"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/m2mgrpc"
	"github.com/m2mauth/m2m/m2mgrpc/internal/authtest"
	"github.com/m2mauth/m2m/m2mgrpc/internal/calendarpb"
	"github.com/m2mauth/m2m/verify"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// calendarService is the Calendar Service's implementation: it answers
// with what the verified token let through.
type calendarService struct{}

func (calendarService) CreateEvent(ctx context.Context, title string) (string, error) {
	c, _ := verify.ClaimsFromContext(ctx)
	return fmt.Sprintf("created %q for %s with %s", title, c.ClientID, strings.Join(c.Scopes, " ")), nil
}

func (calendarService) ListEvents(ctx context.Context, _ string, send func(string) error) error {
	c, _ := verify.ClaimsFromContext(ctx)
	return send("standup, seen with " + strings.Join(c.Scopes, " "))
}

func (calendarService) Ping(context.Context) (string, error) { return "pong", nil }

// A Task Service calls a gRPC Calendar Service with a token for audience
// "event", narrowed per method; the Calendar Service checks it with a Guard.
func Example() {
	auth, err := authtest.Start() // an authorization server: token endpoint and JWKS
	if err != nil {
		log.Fatal(err)
	}
	defer auth.Close()
	ctx := context.Background()

	// The Calendar Service, on 127.0.0.1.
	v, err := verify.New(ctx, verify.Config{JWKSURL: auth.JWKSURL, Issuer: auth.Issuer, Audience: "event"})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	guard, err := m2mgrpc.NewGuard(m2mgrpc.GuardConfig{
		Verifier: v,
		MethodScopes: map[string][]string{
			"/calendar.v1.Calendar/CreateEvent": {"event.create"},
			"/calendar.v1.Calendar/ListEvents":  {"event.view"},
		},
		Public: []string{"/calendar.v1.Calendar/Ping"},
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(guard.Unary), grpc.ChainStreamInterceptor(guard.Stream))
	calendarpb.Register(srv, calendarService{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()

	// The Task Service.
	client, err := m2m.New(m2m.Config{TokenURL: auth.TokenURL, ClientID: "task-service", ClientSecret: "task-secret"})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	calendar, err := client.Source(m2m.Audience{
		Name:   "event",
		Scopes: []string{"event.view", "event.create"},
		URL:    "http://" + lis.Addr().String(), // where the Calendar Service lives: loopback, so no TLS needed
	})
	if err != nil {
		log.Fatal(err)
	}
	creds, err := m2mgrpc.NewCredentials(m2mgrpc.CredentialsConfig{
		Source: calendar,
		MethodScopes: map[string][]string{
			"/calendar.v1.Calendar/CreateEvent": {"event.create"},
			"/calendar.v1.Calendar/ListEvents":  {"event.view"},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(creds),
		grpc.WithChainUnaryInterceptor(creds.Unary), // a refused token is evicted and the RPC sent once more
		grpc.WithChainStreamInterceptor(creds.Stream),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	cal := calendarpb.NewClient(conn)

	fmt.Println(cal.CreateEvent(ctx, "Team sync"))
	fmt.Println(cal.ListEvents(ctx, "today"))

	// Without the credentials, the Calendar Service refuses the call.
	bare, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer bare.Close()
	_, err = calendarpb.NewClient(bare).CreateEvent(ctx, "Team sync")
	fmt.Println(status.Code(err), status.Convert(err).Message())
	// Output:
	// created "Team sync" for task-service with event.create <nil>
	// [standup, seen with event.view] <nil>
	// Unauthenticated m2mgrpc: a bearer token is required
}
