package m2m

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2m/internal/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fault answers one token request.
type fault func(w http.ResponseWriter, r *http.Request)

func reply(status int, header map[string]string, body string) fault {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
}

var okToken = reply(200, map[string]string{"Content-Type": "application/json"}, `{"access_token":"good","token_type":"bearer","expires_in":3600}`)

// reset sends part of a response, then resets the connection.
func reset(w http.ResponseWriter, r *http.Request) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"access_tok")
	buf.Flush()
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
}

// truncated promises more body than it sends.
func truncated(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Length", "200")
	w.WriteHeader(200)
	fmt.Fprint(w, `{"access_token":"a",`)
}

// hang, a nil fault, makes the faultServer never answer: it reads the
// body (only then does a server notice the client going away), counts
// the hung request, so the test knows when to move the fake clock past
// AttemptTimeout, and waits for the client to give up.
var hang fault

func slowBody(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	for _, part := range []string{`{"access_token":`, `"good",`, `"expires_in":3600}`} {
		fmt.Fprint(w, part)
		w.(http.Flusher).Flush()
		time.Sleep(5 * time.Millisecond) // the body trickles in; no timing is asserted
	}
}

// faultServer answers attempt i with script[i], repeating the last one.
type faultServer struct {
	*httptest.Server
	hits   atomic.Int64
	hung   atomic.Int64 // requests taken by hang
	script []fault
}

func newFaultServer(t *testing.T, script ...fault) *faultServer {
	fs := &faultServer{script: script}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(fs.hits.Add(1)) - 1
		f := fs.script[min(n, len(fs.script)-1)]
		if f == nil {
			io.Copy(io.Discard, r.Body)
			fs.hung.Add(1)
			<-r.Context().Done()
			return
		}
		f(w, r)
	}))
	t.Cleanup(fs.Close)
	return fs
}

// recorder is an Observer that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Observe(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) of(kind EventKind) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// drive waits for done, moving the fake clock to each retry's end when a
// retry waits on it, and past attempt once per request h took (a hung
// attempt ends only when its AttemptTimeout fires on the fake clock).
// fs may be nil.
func drive[T any](t *testing.T, fc *clock.Fake, done <-chan T, fs *faultServer, attempt time.Duration) T {
	t.Helper()
	advanced := int64(0)
	deadline := time.After(30 * time.Second) // a broken fetch loop fails here instead of hanging
	for {
		select {
		case v := <-done:
			return v
		case <-deadline:
			t.Fatal("the fetch did not end: a retry or timeout is not driven by the clock")
		case <-time.After(time.Millisecond):
			if d, ok := fc.NextTimer(); ok {
				fc.Advance(d)
			} else if fs != nil && fs.hung.Load() > advanced {
				advanced++
				fc.Advance(attempt)
			}
		}
	}
}

type result struct {
	token string
	life  time.Duration
	err   error
}

func TestFaultMatrix(t *testing.T) {
	t.Parallel()
	big := `{"access_token":"` + strings.Repeat("a", 2<<20) + `"}`
	json := map[string]string{"Content-Type": "application/json"}
	isTokenError := func(status int, code string) func(*testing.T, error) {
		return func(t *testing.T, err error) {
			var te *TokenError
			require.ErrorAs(t, err, &te)
			assert.Equal(t, status, te.StatusCode)
			assert.Equal(t, code, te.ErrorCode)
		}
	}
	isInvalid := func(reason string) func(*testing.T, error) {
		return func(t *testing.T, err error) {
			require.ErrorIs(t, err, ErrInvalidResponse)
			assert.Contains(t, err.Error(), reason)
		}
	}
	isNetwork := func(t *testing.T, err error) {
		var te *TokenError
		require.False(t, errors.As(err, &te))
		require.False(t, errors.Is(err, ErrInvalidResponse))
		assert.Equal(t, FailureNetwork, ClassifyError(err), err.Error())
	}
	tests := []struct {
		name     string
		script   []fault
		refused  bool
		attempts int64
		check    func(*testing.T, error) // nil: a token is expected
		life     time.Duration
		delays   []time.Duration // retry waits, when exact
		failure  FailureKind
	}{
		{name: "500 every time", script: []fault{reply(500, nil, "oops")}, attempts: 3, check: isTokenError(500, ""), failure: FailureServer},
		{name: "502 then ok", script: []fault{reply(502, nil, ""), okToken}, attempts: 2, life: time.Hour},
		{name: "503 then ok", script: []fault{reply(503, json, `{"error":"temporarily_unavailable"}`), okToken}, attempts: 2, life: time.Hour},
		{name: "429 with Retry-After seconds", script: []fault{reply(429, map[string]string{"Retry-After": "3"}, ""), okToken}, attempts: 2, life: time.Hour, delays: []time.Duration{3 * time.Second}},
		{name: "429 with Retry-After date", script: []fault{reply(429, map[string]string{"Retry-After": epoch.Add(2 * time.Second).Format(http.TimeFormat)}, ""), okToken}, attempts: 2, life: time.Hour, delays: []time.Duration{2 * time.Second}},
		{name: "429 with a huge Retry-After is capped", script: []fault{reply(429, map[string]string{"Retry-After": "86400"}, ""), okToken}, attempts: 2, life: time.Hour, delays: []time.Duration{5 * time.Second}},
		{name: "429 without Retry-After", script: []fault{reply(429, nil, ""), okToken}, attempts: 2, life: time.Hour, delays: []time.Duration{0}},
		{name: "429 every time", script: []fault{reply(429, nil, "")}, attempts: 3, check: isTokenError(429, ""), failure: FailureRateLimited},
		{name: "408 then ok", script: []fault{reply(408, nil, ""), okToken}, attempts: 2, life: time.Hour},
		{name: "connection refused", refused: true, check: isNetwork, failure: FailureNetwork},
		{name: "reset mid-body", script: []fault{reset}, attempts: 3, check: isNetwork, failure: FailureNetwork},
		{name: "reset then ok", script: []fault{reset, okToken}, attempts: 2, life: time.Hour},
		{name: "hang until the attempt times out", script: []fault{hang}, attempts: 3, check: func(t *testing.T, err error) {
			assert.Equal(t, FailureTimeout, ClassifyError(err), err.Error())
		}, failure: FailureTimeout},
		{name: "hang then ok", script: []fault{hang, okToken}, attempts: 2, life: time.Hour},
		{name: "slow body", script: []fault{slowBody}, attempts: 1, life: time.Hour},
		{name: "body cut short", script: []fault{truncated}, attempts: 3, check: isNetwork, failure: FailureNetwork},
		{name: "truncated JSON", script: []fault{reply(200, json, `{"access_token":"a","exp`)}, attempts: 1, check: isInvalid("not a JSON object"), failure: FailureInvalidResponse},
		{name: "HTML error page", script: []fault{reply(502, map[string]string{"Content-Type": "text/html"}, "<html>Bad gateway</html>")}, attempts: 3, check: isTokenError(502, ""), failure: FailureServer},
		{name: "HTML with 200", script: []fault{reply(200, map[string]string{"Content-Type": "text/html"}, "<html>login</html>")}, attempts: 1, check: isInvalid(`content type "text/html"`), failure: FailureInvalidResponse},
		{name: "2 MiB body", script: []fault{reply(200, json, big)}, attempts: 1, check: isInvalid("larger than"), failure: FailureInvalidResponse},
		{name: "2 MiB error body", script: []fault{reply(500, nil, big)}, attempts: 3, check: func(t *testing.T, err error) {
			var te *TokenError
			require.ErrorAs(t, err, &te)
			assert.Len(t, te.Body, 1<<20)
		}, failure: FailureServer},
		{name: "empty body", script: []fault{reply(200, json, "")}, attempts: 1, check: isInvalid("not a JSON object"), failure: FailureInvalidResponse},
		{name: "wrong content type, JSON body", script: []fault{reply(200, map[string]string{"Content-Type": "text/plain"}, `{"access_token":"good","expires_in":60}`)}, attempts: 1, life: time.Minute},
		{name: "token_type mac", script: []fault{reply(200, json, `{"access_token":"a","token_type":"mac","expires_in":60}`)}, attempts: 1, check: isInvalid("not bearer"), failure: FailureInvalidResponse},
		{name: "expires_in 0", script: []fault{reply(200, json, `{"access_token":"a","expires_in":0}`)}, attempts: 1, life: DefaultLifetime},
		{name: "expires_in negative", script: []fault{reply(200, json, `{"access_token":"a","expires_in":-1}`)}, attempts: 1, check: isInvalid("negative"), failure: FailureInvalidResponse},
		{name: "expires_in string", script: []fault{reply(200, json, `{"access_token":"a","expires_in":"90"}`)}, attempts: 1, life: 90 * time.Second},
		{name: "expires_in huge", script: []fault{reply(200, json, `{"access_token":"a","expires_in":1e30}`)}, attempts: 1, life: 365 * 24 * time.Hour},
		{name: "missing access_token", script: []fault{reply(200, json, `{"token_type":"bearer"}`)}, attempts: 1, check: isInvalid("no access_token"), failure: FailureInvalidResponse},
		{name: "400 invalid_scope", script: []fault{reply(400, json, `{"error":"invalid_scope"}`)}, attempts: 1, check: isTokenError(400, "invalid_scope"), failure: FailureClient},
		{name: "400 invalid_request", script: []fault{reply(400, json, `{"error":"invalid_request"}`)}, attempts: 1, check: isTokenError(400, "invalid_request"), failure: FailureClient},
		{name: "401 invalid_client", script: []fault{reply(401, json, `{"error":"invalid_client"}`)}, attempts: 1, check: isTokenError(401, "invalid_client"), failure: FailureClient},
		{name: "403 unauthorized_client", script: []fault{reply(403, json, `{"error":"unauthorized_client"}`)}, attempts: 1, check: isTokenError(403, "unauthorized_client"), failure: FailureClient},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var tokenURL string
			var fs *faultServer
			if tc.refused {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				tokenURL = "http://" + ln.Addr().String() + "/token"
				ln.Close()
			} else {
				fs = newFaultServer(t, tc.script...)
				tokenURL = fs.URL + "/token"
			}
			rec := &recorder{}
			fc := clock.NewFake(epoch)
			const attemptTimeout = 100 * time.Millisecond
			c, err := newClient(Config{TokenURL: tokenURL, ClientID: testID, ClientSecret: testSecret,
				MaxRetries: 2, AttemptTimeout: attemptTimeout, RetryBaseDelay: 100 * time.Millisecond, RetryMaxDelay: 5 * time.Second,
				Observer: rec}, fc, noJitter)
			require.NoError(t, err)
			defer c.Close()
			src := mustSource(t, c, eventAudience)
			done := make(chan result, 1)
			go func() {
				tok, err := src.TokenContext(context.Background())
				r := result{err: err}
				if tok != nil {
					r.token, r.life = tok.AccessToken, time.Duration(tok.ExpiresIn)*time.Second
				}
				done <- r
			}()
			r := drive(t, fc, done, fs, attemptTimeout)
			if fs != nil {
				assert.Equal(t, tc.attempts, fs.hits.Load(), "attempts")
			}
			retries := rec.of(EventRetry)
			for i, d := range tc.delays {
				require.Greater(t, len(retries), i)
				assert.Equal(t, d, retries[i].Duration, "retry %d wait", i)
			}
			if tc.check == nil {
				require.NoError(t, r.err)
				assert.Equal(t, tc.life, r.life)
				require.Len(t, rec.of(EventFetch), 1)
				return
			}
			require.Error(t, r.err)
			assert.Empty(t, r.token)
			tc.check(t, r.err)
			assert.NotContains(t, r.err.Error(), testSecret)
			failures := rec.of(EventFailure)
			require.Len(t, failures, 1)
			assert.Equal(t, tc.failure, failures[0].Failure)
			if tc.refused {
				assert.Equal(t, 3, failures[0].Attempts)
			}
		})
	}
}
