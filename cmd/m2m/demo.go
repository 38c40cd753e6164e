package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/internal/devserver"
	"github.com/m2mauth/m2m/internal/wire"
	"github.com/m2mauth/m2m/verify"
)

// demo runs the seed flow: a Task Service calls a Calendar Service
// (audience "event") and a File Service (audience "file") with tokens from
// a development authorization server, through one http.Client.
type demo struct {
	out      io.Writer
	auth     *devserver.Server
	hc       *http.Client
	failures []string
	step     int

	mu   sync.Mutex
	seen map[string]time.Time // calendar: jti → exp of tokens received
}

func runDemo(ctx context.Context, args []string, stdout, _ io.Writer) error {
	c := newCommand("demo", "demo [--token-lifetime 2s] [--refresh-run 4s]",
		"Runs the Task/Calendar/File flow end to end against an embedded development\n"+
			"authorization server and exits 0 only when every step behaves as expected.")
	lifetime := c.Duration("token-lifetime", 2*time.Second, "access-token lifetime of the Task Service's client")
	refreshRun := c.Duration("refresh-run", 4*time.Second, "how long to call the Calendar Service to show refreshes")
	if err := c.parse(args, stdout); err != nil {
		return err
	}
	if err := c.noArgs(); err != nil {
		return err
	}
	// JWT exp is whole seconds, so a token lives up to a second less than
	// its expires_in: below 2 s that leaves too little to show anything.
	if *lifetime < 2*time.Second || *refreshRun < *lifetime {
		return usagef("--token-lifetime must be at least 2s and --refresh-run at least the lifetime, got %s and %s", *lifetime, *refreshRun)
	}
	d := &demo{out: stdout, seen: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return d.run(ctx, *lifetime, *refreshRun)
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *demo) run(ctx context.Context, lifetime, refreshRun time.Duration) error {
	d.printf("m2m demo: a Task Service calls a Calendar Service (audience \"event\") and a File Service (audience \"file\").\n\n")

	// 1. The authorization server.
	auth, err := devserver.New(devserver.Options{})
	if err != nil {
		return err
	}
	if err := auth.Start(ctx, "127.0.0.1:0"); err != nil {
		return err
	}
	defer auth.Close()
	d.auth = auth
	d.printf("1. Development authorization server (not for production) at %s\n   token endpoint %s, JWKS %s\n",
		auth.URL(), auth.TokenURL(), auth.JWKSURL())

	// 2. Register the Task Service's client through the core-style API.
	reg := &registry{coreURL: auth.URL(), apiKey: auth.APIKey(), hc: wire.NewHTTPClient(10 * time.Second)}
	defer reg.hc.CloseIdleConnections()
	client, err := reg.create(ctx, oauthClient{
		Name:       "Task Service",
		Scope:      "event.view event.create event.update event.delete file.view file.create file.update file.delete",
		Audience:   []string{"event", "file"},
		AuthMethod: "client_secret_basic",
		Lifespan:   lifetime.String(),
	})
	if err != nil {
		return fmt.Errorf("registering the Task Service: %w", err)
	}
	d.printf("2. Registered OAuth2 client \"Task Service\" (POST /recipe/oauth/clients): client_id %s, tokens live %s\n", client.ID, lifetime)

	// 3. The called services, each checking tokens with verify.
	calendar, err := d.service(ctx, "event", map[string]string{"POST /events": "event.create", "GET /events": "event.view"})
	if err != nil {
		return err
	}
	files, err := d.service(ctx, "file", map[string]string{"GET /api/files": "file.view", "POST /api/files": "file.create"})
	if err != nil {
		return err
	}
	d.printf("3. Calendar Service at %s (POST /events needs event.create)\n   File Service at %s (GET /api/files needs file.view, POST needs file.create)\n\n", calendar, files)

	// 4. The Task Service: one client, one Transport, a token per audience.
	c, err := m2m.New(m2m.Config{TokenURL: auth.TokenURL(), ClientID: client.ID, ClientSecret: client.Secret})
	if err != nil {
		return err
	}
	defer c.Close()
	cal, err := c.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view", "event.create"}, URL: calendar})
	if err != nil {
		return err
	}
	fil, err := c.Source(m2m.Audience{Name: "file", Scopes: []string{"file.view"}, URL: files + "/api/"})
	if err != nil {
		return err
	}
	d.hc = &http.Client{Transport: m2m.NewTransport(nil, cal, fil), Timeout: 10 * time.Second}
	defer d.hc.CloseIdleConnections()
	create := m2m.WithScopes(ctx, "event.create")

	d.printf("Task Service requests (one http.Client with m2m's Transport):\n")
	d.call(create, "POST", calendar+"/events", "event.create", http.StatusCreated, "fetch")
	d.call(ctx, "GET", files+"/api/files", "file.view", http.StatusOK, "fetch")
	for range 3 {
		d.call(create, "POST", calendar+"/events", "event.create", http.StatusCreated, "cached")
	}
	d.call(ctx, "POST", files+"/api/files", "file.view", http.StatusForbidden, "cached")
	d.refresh(create, calendar, lifetime, refreshRun)
	_, err = cal.TokenContext(m2m.WithScopes(ctx, "event.purge"))
	d.step++
	d.printf("%2d. ask for scope event.purge, which the Task Service never declared\n    ← %v (no request sent)\n", d.step, err)
	if !errors.Is(err, m2m.ErrUndeclaredScope) {
		d.failures = append(d.failures, "an undeclared scope was not refused")
	}

	d.printf("\n")
	if len(d.failures) > 0 {
		return fmt.Errorf("%d step(s) misbehaved: %s", len(d.failures), strings.Join(d.failures, "; "))
	}
	d.printf("All %d steps behaved as expected: one token per audience and scope set, reused from memory,\nrefreshed before expiry with no failed request, and refused where the token lacks the scope.\n", d.step)
	return nil
}

// service starts a called service whose routes each require one scope.
func (d *demo) service(ctx context.Context, audience string, routes map[string]string) (string, error) {
	v, err := verify.New(ctx, verify.Config{
		JWKSURL:  d.auth.JWKSURL(),
		Issuer:   d.auth.Issuer(),
		Audience: audience,
		Leeway:   -1, // no leeway: a token used past its exp would fail the demo
	})
	if err != nil {
		return "", err
	}
	context.AfterFunc(ctx, func() { v.Close() })
	mux := http.NewServeMux()
	for pattern, scope := range routes {
		status := http.StatusOK
		if strings.HasPrefix(pattern, "POST") {
			status = http.StatusCreated
		}
		mux.Handle(pattern, v.Middleware(scope)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := verify.ClaimsFromContext(r.Context())
			d.mu.Lock()
			d.seen[c.ID] = c.ExpiresAt
			d.mu.Unlock()
			w.WriteHeader(status)
			fmt.Fprintf(w, "%s for %s\n", pattern, c.ClientID)
		})))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	context.AfterFunc(ctx, func() { srv.Close() })
	return "http://" + ln.Addr().String(), nil
}

// call sends one request and checks its status and whether the token came
// from the cache ("cached") or a new fetch ("fetch").
func (d *demo) call(ctx context.Context, method, url, scopes string, want int, token string) {
	d.step++
	before := d.auth.TokenRequests()
	status, challenge, err := d.send(ctx, method, url)
	fetched := d.auth.TokenRequests() - before
	got := "cached"
	if fetched > 0 {
		got = "fetch"
	}
	d.printf("%2d. %-4s %-40s scopes=%-13s ← ", d.step, method, url, scopes)
	if err != nil {
		d.printf("error: %v\n", err)
		d.failures = append(d.failures, fmt.Sprintf("step %d: %v", d.step, err))
		return
	}
	source := "from memory"
	if got == "fetch" {
		source = "fetched from the token endpoint"
	}
	d.printf("%d %s, token %s", status, http.StatusText(status), source)
	if challenge != "" {
		d.printf("\n    WWW-Authenticate: %s", challenge)
	}
	d.printf("\n")
	if status != want || got != token {
		d.failures = append(d.failures, fmt.Sprintf("step %d: got %d/%s, want %d/%s", d.step, status, got, want, token))
	}
}

func (d *demo) send(ctx context.Context, method, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), nil
}

// refresh calls the Calendar Service steadily for longer than a token
// lives and checks that tokens were renewed before they expired.
func (d *demo) refresh(ctx context.Context, calendar string, lifetime, run time.Duration) {
	d.step++
	d.printf("%2d. POST /events every 50 ms for %s (tokens live %s) ...\n", d.step, run, lifetime)
	before := d.auth.TokenRequests()
	d.mu.Lock()
	clear(d.seen)
	d.mu.Unlock()
	var sent, failed int
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(run)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-deadline:
			break loop
		case <-tick.C:
			sent++
			if status, _, err := d.send(ctx, "POST", calendar+"/events"); err != nil || status != http.StatusCreated {
				failed++
			}
		}
	}
	fetches := d.auth.TokenRequests() - before
	d.mu.Lock()
	distinct := len(d.seen)
	d.mu.Unlock()
	d.printf("    ← %d requests, %d failed; %d token fetches in the background; %d distinct tokens reached the Calendar Service\n",
		sent, failed, fetches, distinct)
	minimum := int(run / lifetime)
	if failed > 0 || distinct < minimum || fetches < int64(minimum) {
		d.failures = append(d.failures, fmt.Sprintf("refresh: %d failed requests, %d tokens, %d fetches (want 0 failed, at least %d tokens)", failed, distinct, fetches, minimum))
	}
}
