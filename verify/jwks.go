package verify

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2m/internal/clock"
	"github.com/m2mauth/m2m/internal/wire"
	"golang.org/x/time/rate"
)

// RSA moduli outside these bounds are not signature keys the verifier
// uses: too weak below, too slow to verify above (a hostile JWKS could
// make every check cost milliseconds).
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// key is one usable public signature key of the JWKS. A *key is immutable;
// a refresh that finds the same kid with the same fingerprint keeps the
// same *key, so a cached token's key is still current exactly when the
// current set maps its kid to the same pointer.
type key struct {
	kid string
	alg string // the JWK's alg; "" when it names none
	kty string
	crv elliptic.Curve
	pub crypto.PublicKey // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	fp  [32]byte         // SHA-256 of kty, alg and the public key material
}

// keyMap is one immutable generation of the JWKS.
type keyMap struct {
	byKID map[string]*key
	sole  *key // the only key, when the set holds exactly one
	n     int
}

// keySet is the verifier's view of a remote JWKS: replaced wholesale on
// every fetch (a key removed upstream stops verifying after the next
// refresh), refreshed on a timer, and refetched when a token names an
// unknown kid — at most once per rate window, one fetch at a time, and
// never on a caller's context. It is safe for concurrent use.
//
// Why not keyfunc/jwkset: their unknown-kid path waits on the rate
// limiter with the caller's context, reads bodies without a size limit,
// keeps symmetric, short RSA and duplicate-kid keys, ignores key_ops, and
// identifies a key by kid alone.
type keySet struct {
	url     string
	hc      *http.Client
	timeout time.Duration
	limiter *rate.Limiter // unknown-kid refetches
	log     *slog.Logger
	clock   clock.Clock

	cur     atomic.Pointer[keyMap]
	fetches atomic.Int64 // JWKS requests made

	mu       sync.Mutex
	inflight chan struct{} // closed when the running fetch ends; guarded by mu
	lastErr  error         // of the last fetch; guarded by mu
	closed   bool          // guarded by mu

	ctx    context.Context // ends on close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newKeySet(url string, hc *http.Client, timeout, every time.Duration, log *slog.Logger, clk clock.Clock) *keySet {
	ks := &keySet{
		url:     url,
		hc:      hc,
		timeout: timeout,
		limiter: rate.NewLimiter(rate.Every(every), 1),
		log:     log,
		clock:   clk,
	}
	ks.cur.Store(&keyMap{byKID: map[string]*key{}})
	ks.ctx, ks.cancel = context.WithCancel(context.Background())
	return ks
}

// resolve returns the key a token names: by kid, or the set's only key
// for a token without kid. An unknown kid waits (on ctx) for one refetch
// if the rate window allows it or one is already running.
func (ks *keySet) resolve(ctx context.Context, h *header) (k *key, sole bool, err error) {
	m := ks.cur.Load()
	if !h.hasKid {
		if m.sole == nil {
			return nil, false, reject(ErrUnknownKey, "the token has no kid and the JWKS holds %d keys, not one", m.n)
		}
		return m.sole, true, nil
	}
	if k := m.byKID[h.kid]; k != nil {
		return k, false, nil
	}
	ks.mu.Lock()
	var done <-chan struct{}
	if ks.inflight != nil {
		done = ks.inflight
	}
	ks.mu.Unlock()
	switch {
	case done != nil:
		// A refetch is running (another token with this new kid, most
		// likely): wait for it rather than be refused by the rate limit.
		ks.log.LogAttrs(ctx, slog.LevelDebug, "verify: unknown kid, waiting for the running JWKS fetch", slog.String("kid", shown(h.kid)))
	case ks.limiter.Allow():
		ks.log.LogAttrs(ctx, slog.LevelInfo, "verify: unknown kid, refetching JWKS", slog.String("kid", shown(h.kid)))
		done = ks.fetch()
	default:
		if k := ks.cur.Load().byKID[h.kid]; k != nil {
			return k, false, nil // a refetch ended since the first look
		}
		return nil, false, reject(ErrUnknownKey, "no key with kid %s in the JWKS (next refetch allowed later)", quoted(h.kid))
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, false, fmt.Errorf("verify: waiting for the JWKS: %w", ctx.Err())
	}
	if k := ks.cur.Load().byKID[h.kid]; k != nil {
		return k, false, nil
	}
	ks.mu.Lock()
	ferr := ks.lastErr
	ks.mu.Unlock()
	if ferr != nil {
		return nil, false, reject(ErrUnknownKey, "no key with kid %s in the JWKS, and refetching it failed: %v", quoted(h.kid), ferr)
	}
	return nil, false, reject(ErrUnknownKey, "no key with kid %s in the JWKS, even refetched", quoted(h.kid))
}

// current reports whether k is still the key the set holds for its kid
// (or, for sole, still the set's only key).
func (ks *keySet) current(k *key, sole bool) bool {
	m := ks.cur.Load()
	if sole {
		return m.sole == k
	}
	return m.byKID[k.kid] == k
}

// fetch starts a fetch unless one is running, and returns a channel closed
// when the running one ends. After close it returns a closed channel.
func (ks *keySet) fetch() <-chan struct{} {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.closed {
		done := make(chan struct{})
		close(done)
		return done
	}
	if ks.inflight == nil {
		done := make(chan struct{})
		ks.inflight = done
		ks.wg.Add(1)
		go func() {
			defer ks.wg.Done()
			err := ks.refresh()
			ks.mu.Lock()
			ks.lastErr = err
			ks.inflight = nil
			close(done)
			ks.mu.Unlock()
		}()
	}
	return ks.inflight
}

// refresh fetches the JWKS under the set's own context and timeout, never
// a caller's, and replaces the keys. On failure the old keys stay.
func (ks *keySet) refresh() error {
	ctx, cancel := context.WithTimeout(ks.ctx, ks.timeout)
	defer cancel()
	m, err := ks.get(ctx)
	if err != nil {
		ks.log.LogAttrs(ctx, slog.LevelWarn, "verify: JWKS fetch failed", slog.String("url", ks.url), slog.String("error", err.Error()))
		return err
	}
	ks.cur.Store(m)
	return nil
}

// get GETs the JWKS through a size limit and keeps the usable keys.
func (ks *keySet) get(ctx context.Context) (*keyMap, error) {
	ks.fetches.Add(1)
	body, err := getJSON(ctx, ks.hc, ks.url, "JWKS")
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil || set.Keys == nil {
		return nil, fmt.Errorf("verify: JWKS at %s is not a JSON key set", ks.url)
	}
	if err := exactMembers(body, "keys"); err != nil {
		return nil, fmt.Errorf("verify: JWKS at %s: %v", ks.url, err)
	}
	return ks.usable(set.Keys), nil
}

// getJSON GETs url and returns its body: status 200, at most wire.MaxBody
// bytes. what names the document in errors.
func getJSON(ctx context.Context, hc *http.Client, url, what string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("verify: %s request: %w", what, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("verify: fetching %s: %w", what, err)
	}
	defer resp.Body.Close()
	body, truncated, err := wire.ReadBody(resp.Body)
	switch {
	case err != nil:
		return nil, fmt.Errorf("verify: reading %s: %w", what, err)
	case resp.StatusCode != http.StatusOK:
		return nil, &statusError{what: what, url: url, code: resp.StatusCode}
	case truncated:
		return nil, fmt.Errorf("verify: %s larger than %d bytes", what, wire.MaxBody)
	}
	return body, nil
}

// statusError is an answer with a status other than 200.
type statusError struct {
	what, url string
	code      int
}

func (e *statusError) Error() string {
	return fmt.Sprintf("verify: %s at %s answered %d", e.what, e.url, e.code)
}

// jwkMembers are the names of jwkJSON's members.
var jwkMembers = []string{"kty", "use", "key_ops", "alg", "kid", "crv", "n", "e", "x", "y"}

// exactMembers checks what encoding/json lets pass: in the JSON object
// obj, no member may appear twice, and none of known may appear in
// another case. encoding/json matches names without regard to case and
// keeps the last of duplicates, so {"use":"enc","USE":"sig"} would read
// as a signature key. It looks at obj's own members only: the strict
// reader's object walk (jsonReader.object) checks nested objects too, so
// one malformed key would refuse the whole key set instead of that key.
func exactMembers(obj []byte, known ...string) error {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return errors.New("not a JSON object")
		}
		name, _ := t.(string)
		if seen[name] {
			return fmt.Errorf("member %s appears twice", quoted(name))
		}
		seen[name] = true
		for _, k := range known {
			if name != k && strings.EqualFold(name, k) {
				return fmt.Errorf("member %s is %q in another case", quoted(name), k)
			}
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return errors.New("not a JSON object")
		}
	}
	return nil
}

// jwkJSON is the part of a JSON Web Key (RFC 7517, RFC 7518 §6) the verifier reads.
type jwkJSON struct {
	Kty    string   `json:"kty"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Alg    string   `json:"alg"`
	Kid    string   `json:"kid"`
	Crv    string   `json:"crv"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
}

// usable keeps the public signature keys the verifier accepts, reusing the
// current *key of every kid whose key did not change. A key is dropped
// when its use is not "sig", its key_ops lack "verify", it is symmetric or
// of an unknown type, its alg does not fit it, an RSA modulus is outside
// 2048–8192 bits, or its kid appears twice (which one signs would be
// ambiguous).
func (ks *keySet) usable(raw []json.RawMessage) *keyMap {
	old := ks.cur.Load()
	keys := make([]*key, 0, len(raw))
	kids := map[string]int{}
	for _, r := range raw {
		var j jwkJSON
		if err := json.Unmarshal(r, &j); err != nil {
			ks.ignore(j, "not a JSON Web Key")
			continue
		}
		if err := exactMembers(r, jwkMembers...); err != nil {
			ks.ignore(j, err.Error())
			continue
		}
		k, reason := parseJWK(j)
		if reason != "" {
			ks.ignore(j, reason)
			continue
		}
		prev := old.byKID[k.kid]
		if k.kid == "" {
			prev = old.sole
		}
		if prev != nil && prev.kid == k.kid && prev.fp == k.fp {
			k = prev
		}
		keys = append(keys, k)
		kids[k.kid]++
	}
	m := &keyMap{byKID: make(map[string]*key, len(keys))}
	for _, k := range keys {
		if kids[k.kid] > 1 {
			ks.ignore(jwkJSON{Kid: k.kid, Kty: k.kty}, "its kid appears more than once")
			continue
		}
		m.n++
		m.sole = k
		if k.kid != "" {
			m.byKID[k.kid] = k
		}
	}
	if m.n != 1 {
		m.sole = nil
	}
	return m
}

func (ks *keySet) ignore(j jwkJSON, reason string) {
	ks.log.LogAttrs(context.Background(), slog.LevelWarn, "verify: JWKS key ignored",
		slog.String("kid", shown(j.Kid)), slog.String("kty", shown(j.Kty)), slog.String("reason", reason))
}

// parseJWK builds a key from a JWK, or says why it is not a usable
// signature key.
func parseJWK(j jwkJSON) (*key, string) {
	if j.Use != "" && j.Use != "sig" {
		return nil, "use is not sig"
	}
	if j.KeyOps != nil && !slices.Contains(j.KeyOps, "verify") {
		return nil, "key_ops lacks verify"
	}
	k, material, reason := publicJWK(j)
	if reason != "" {
		return nil, reason
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", j.Kty, j.Alg, j.Crv)
	h.Write(material)
	h.Sum(k.fp[:0])
	return k, ""
}

// publicJWK builds the public key of a JWK, without its fingerprint, and
// returns the key material it was read from; or it says why the JWK is
// not a usable public signature key.
func publicJWK(j jwkJSON) (k *key, material []byte, reason string) {
	k = &key{kid: j.Kid, alg: j.Alg, kty: j.Kty}
	switch j.Kty {
	case "RSA":
		n, err1 := b64.DecodeString(j.N)
		e, err2 := b64.DecodeString(j.E)
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, nil, "malformed RSA key"
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if bits := pub.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return nil, nil, fmt.Sprintf("RSA key of %d bits, outside %d–%d", bits, minRSABits, maxRSABits)
		}
		if pub.E < 3 || pub.E&1 == 0 || pub.E > 1<<31-1 {
			return nil, nil, "RSA exponent is not an odd number from 3 to 2³¹-1"
		}
		k.pub = pub
		material = append(append(pub.N.Bytes(), '.'), new(big.Int).SetInt64(int64(pub.E)).Bytes()...)
	case "EC":
		var curve elliptic.Curve
		switch j.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, nil, "unsupported EC curve"
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err1 := b64.DecodeString(j.X)
		y, err2 := b64.DecodeString(j.Y)
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, nil, "malformed EC key"
		}
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, nil, "EC point not on the curve"
		}
		k.pub, k.crv = pub, curve
		material = point
	case "OKP":
		x, err := b64.DecodeString(j.X)
		if j.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return nil, nil, "not an Ed25519 key"
		}
		k.pub = ed25519.PublicKey(x)
		material = x
	case "oct":
		return nil, nil, "symmetric key"
	default:
		return nil, nil, "unsupported key type"
	}
	if j.Alg != "" {
		a := algorithms[j.Alg]
		if a == nil || !a.fits(k) {
			return nil, nil, "its alg does not fit the key"
		}
	}
	return k, material, ""
}

// fits reports whether a can verify with k: the key type, and the curve
// for ECDSA (ignoring the JWK's own alg).
func (a *algorithm) fits(k *key) bool {
	return a.kty == k.kty && (a.curve == nil || a.curve == k.crv)
}

// run refreshes the set every interval until close.
func (ks *keySet) run(every time.Duration) {
	ks.wg.Add(1)
	go func() {
		defer ks.wg.Done()
		for {
			c, stop := ks.clock.NewTimer(every)
			select {
			case <-ks.ctx.Done():
				stop()
				return
			case <-c:
				select {
				case <-ks.fetch():
				case <-ks.ctx.Done():
					return
				}
			}
		}
	}()
}

func (ks *keySet) close() {
	ks.mu.Lock()
	ks.closed = true
	ks.mu.Unlock()
	ks.cancel()
	ks.wg.Wait()
}
