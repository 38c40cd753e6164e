package m2m

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2m/internal/clock"
)

// Credential files: a secret, key, assertion or certificate read from
// files and read again when they change, and the transport that presents
// the current client certificate.

// watched is a value parsed from files and read again when they change:
// looked at (read and hashed with SHA-256) at most every fileCheckEvery,
// or at once when forced, and parsed again when the hash changes. Why not
// size and modification time alone: a rewrite of the same length within
// the file system's timestamp granularity (milliseconds) looks unchanged,
// and credential files are small. A file that no longer parses, or is
// gone, keeps the last good value. Without files it is a constant. It is
// safe for concurrent use; get is called on the fetch path only.
type watched[T any] struct {
	field string // the Config field, for errors and logs
	paths []string
	parse func(data [][]byte) (*T, error)
	cur   atomic.Pointer[T]

	mu   sync.Mutex
	next time.Time // guarded by mu: no look before this unless forced
	sum  [32]byte  // guarded by mu: the hash of what cur was parsed from
}

// constant returns a watched that always holds v.
func constant[T any](v *T) *watched[T] {
	w := &watched[T]{}
	w.cur.Store(v)
	return w
}

// newWatched reads the files once; an error names the field, never the
// content.
func newWatched[T any](field string, now time.Time, parse func([][]byte) (*T, error), paths ...string) (*watched[T], error) {
	w := &watched[T]{field: field, paths: paths, parse: parse}
	if _, _, err := w.get(now, true); err != nil {
		return nil, configErr("%v", err)
	}
	return w, nil
}

// get returns the current value, looking at the files first when a look
// is due or force is set. changed reports a new value; err a failed look
// (the last good value is kept and returned).
func (w *watched[T]) get(now time.Time, force bool) (v *T, changed bool, err error) {
	if len(w.paths) == 0 {
		return w.cur.Load(), false, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := w.cur.Load()
	if cur != nil && !force && now.Before(w.next) {
		return cur, false, nil
	}
	w.next = now.Add(fileCheckEvery)
	data := make([][]byte, len(w.paths))
	defer func() {
		for _, d := range data {
			clear(d) // drop our copy of the key material
		}
	}()
	h := sha256.New()
	for i, p := range w.paths {
		if data[i], err = readLimited(p); err != nil {
			return cur, false, fmt.Errorf("%s: %w", w.field, err)
		}
		fmt.Fprintf(h, "%d:", len(data[i]))
		h.Write(data[i])
	}
	var sum [32]byte
	h.Sum(sum[:0])
	if cur != nil && sum == w.sum {
		return cur, false, nil
	}
	next, err := w.parse(data)
	if err != nil {
		return cur, false, fmt.Errorf("%s: %w", w.field, err)
	}
	w.cur.Store(next)
	w.sum = sum
	return next, cur != nil, nil
}

// readLimited reads a credential file of at most maxKeyFile bytes.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errors.Unwrap(err) // the *PathError's path is the field's value
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, errors.New("cannot be read")
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("is larger than %d bytes", maxKeyFile)
	}
	return b, nil
}

// withClientCertificate returns hc on a transport that presents a's
// certificate: a clone of hc's transport, which must be an
// *http.Transport, made again for each new certificate.
func (a *clientAuth) withClientCertificate(hc *http.Client, clk clock.Clock, linger time.Duration) (*http.Client, error) {
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	t, ok := rt.(*http.Transport)
	if !ok {
		return nil, configErr("TLSCertFile needs HTTPClient.Transport to be an *http.Transport (or nil), not %T", rt)
	}
	ct := &certTransport{template: t.Clone(), src: &a.cert.cur, clock: clk, linger: linger}
	ct.refresh()
	a.onCert = ct.refresh
	c := *hc
	c.Transport = ct
	return &c, nil
}

// certTransport sends requests through an *http.Transport that presents
// the current client certificate. A new certificate gets a new transport
// rather than a new callback: a connection's certificate is fixed at its
// handshake, and a pooled connection made with the old one must not carry
// a request after the change. It is safe for concurrent use.
type certTransport struct {
	template *http.Transport
	src      *atomic.Pointer[tls.Certificate] // the current certificate
	cur      atomic.Pointer[http.Transport]
	clock    clock.Clock
	linger   time.Duration // after it, the old transport's requests have ended

	mu   sync.Mutex       // serializes refresh
	cert *tls.Certificate // guarded by mu: the certificate cur presents
}

// refresh switches to a transport presenting the current certificate if
// cur presents another, and closes the old one's connections: the idle
// ones now, the busy ones once they are idle.
func (ct *certTransport) refresh() {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	cert := ct.src.Load()
	if cert == ct.cert {
		return
	}
	ct.cert = cert
	t := ct.template.Clone()
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	}
	// Why not Certificates: crypto/tls sends none of those that the
	// server's list of acceptable CAs rules out, and a self-signed
	// certificate (self_signed_tls_client_auth) is never on that list.
	t.TLSClientConfig.Certificates = nil
	t.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	if old := ct.cur.Swap(t); old != nil {
		old.CloseIdleConnections()
		ct.clock.AfterFunc(ct.linger, old.CloseIdleConnections)
	}
}

// RoundTrip implements http.RoundTripper.
func (ct *certTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return ct.cur.Load().RoundTrip(r)
}

// CloseIdleConnections closes the current transport's idle connections.
func (ct *certTransport) CloseIdleConnections() { ct.cur.Load().CloseIdleConnections() }
