package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/m2mauth/m2m/internal/clock"
	"github.com/m2mauth/m2m/internal/wire"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
)

// minRSABits is the smallest RSA modulus a JWKS key may have.
const minRSABits = 2048

// keySet is the verifier's view of a remote JWKS: a jwkset storage that
// is replaced wholesale on every fetch (so a key removed upstream stops
// verifying after the next refresh), refreshed on a timer, and refetched
// when a token names an unknown kid — at most once per rate window, with
// concurrent callers sharing one fetch. It is safe for concurrent use.
//
// Why not jwkset's own HTTP storage: its unknown-kid path waits on the
// rate limiter with the caller's context (a request could block for the
// whole window), it reads bodies without a size limit, and it keeps
// symmetric, short RSA and duplicate-kid keys.
type keySet struct {
	jwkset.Storage // the current keys; KeyRead is overridden

	url     string
	hc      *http.Client
	timeout time.Duration
	limiter *rate.Limiter // unknown-kid refetches
	group   singleflight.Group
	log     *slog.Logger
	clock   clock.Clock

	kids    atomic.Pointer[map[string]bool] // kids of the current set
	fetches atomic.Int64                    // JWKS requests made

	ctx    context.Context // ends on close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newKeySet(url string, hc *http.Client, timeout, every time.Duration, log *slog.Logger, clk clock.Clock) *keySet {
	ks := &keySet{
		Storage: jwkset.NewMemoryStorage(),
		url:     url,
		hc:      hc,
		timeout: timeout,
		limiter: rate.NewLimiter(rate.Every(every), 1),
		log:     log,
		clock:   clk,
	}
	empty := map[string]bool{}
	ks.kids.Store(&empty)
	ks.ctx, ks.cancel = context.WithCancel(context.Background())
	return ks
}

// KeyRead returns the key of kid. An unknown kid triggers one refetch if
// the rate window allows it or a refetch is already running; otherwise it
// fails at once with jwkset.ErrKeyNotFound.
func (ks *keySet) KeyRead(ctx context.Context, kid string) (jwkset.JWK, error) {
	jwk, err := ks.Storage.KeyRead(ctx, kid)
	if !errors.Is(err, jwkset.ErrKeyNotFound) {
		return jwk, err
	}
	if !ks.limiter.Allow() {
		return jwk, err
	}
	ks.log.LogAttrs(ctx, slog.LevelInfo, "m2m/verify: unknown kid, refetching JWKS", slog.String("kid", kid))
	if _, ferr, _ := ks.group.Do("fetch", func() (any, error) { return nil, ks.refresh() }); ferr != nil {
		return jwk, fmt.Errorf("%w (refetch failed: %v)", err, ferr)
	}
	return ks.Storage.KeyRead(ctx, kid)
}

// has reports whether kid is in the current set.
func (ks *keySet) has(kid string) bool { return (*ks.kids.Load())[kid] }

// refresh fetches the JWKS under the set's own context and timeout, never
// a caller's, and replaces the keys. On failure the old keys stay.
func (ks *keySet) refresh() error {
	ctx, cancel := context.WithTimeout(ks.ctx, ks.timeout)
	defer cancel()
	keys, kids, err := ks.fetch(ctx)
	if err != nil {
		ks.log.LogAttrs(ctx, slog.LevelWarn, "m2m/verify: JWKS fetch failed", slog.String("url", ks.url), slog.String("error", err.Error()))
		return err
	}
	if err := ks.Storage.KeyReplaceAll(ctx, keys); err != nil {
		return err
	}
	ks.kids.Store(&kids)
	return nil
}

// fetch GETs the JWKS through a size limit and keeps the usable keys.
func (ks *keySet) fetch(ctx context.Context) ([]jwkset.JWK, map[string]bool, error) {
	ks.fetches.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("m2m/verify: fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	body, truncated, err := wire.ReadBody(resp.Body)
	switch {
	case err != nil:
		return nil, nil, fmt.Errorf("m2m/verify: reading JWKS: %w", err)
	case resp.StatusCode != http.StatusOK:
		return nil, nil, fmt.Errorf("m2m/verify: JWKS answered %d", resp.StatusCode)
	case truncated:
		return nil, nil, fmt.Errorf("m2m/verify: JWKS larger than %d bytes", wire.MaxBody)
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, nil, fmt.Errorf("m2m/verify: JWKS is not a JSON key set: %w", err)
	}
	return ks.usable(set.Keys)
}

// usable keeps the public signature keys the verifier accepts: use "sig"
// or unset, no symmetric keys, RSA of at least 2048 bits, and no kid that
// appears twice (both are dropped: which one signs is ambiguous).
func (ks *keySet) usable(in []jwkset.JWKMarshal) ([]jwkset.JWK, map[string]bool, error) {
	count := map[string]int{}
	for _, m := range in {
		count[m.KID]++
	}
	var keys []jwkset.JWK
	kids := map[string]bool{}
	for _, m := range in {
		reason := ""
		switch {
		case count[m.KID] > 1:
			reason = "duplicate kid"
		case m.USE != "" && m.USE != jwkset.UseSig:
			reason = "use is not sig"
		case m.KTY == jwkset.KtyOct:
			reason = "symmetric key"
		case m.KTY == jwkset.KtyRSA && rsaBits(m.N) < minRSABits:
			reason = fmt.Sprintf("RSA key below %d bits", minRSABits)
		}
		if reason == "" {
			// Public parts only; never follow an x5u URL.
			pub := jwkset.JWKMarshal{KTY: m.KTY, USE: m.USE, ALG: m.ALG, KID: m.KID, CRV: m.CRV, X: m.X, Y: m.Y, N: m.N, E: m.E}
			jwk, err := jwkset.NewJWKFromMarshal(pub, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
			if err == nil {
				keys = append(keys, jwk)
				kids[m.KID] = true
				continue
			}
			reason = err.Error()
		}
		ks.log.LogAttrs(context.Background(), slog.LevelWarn, "m2m/verify: JWKS key ignored",
			slog.String("kid", m.KID), slog.String("kty", string(m.KTY)), slog.String("reason", reason))
	}
	return keys, kids, nil
}

// rsaBits returns the bit length of a base64url modulus, 0 if malformed.
func rsaBits(n string) int {
	b, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil {
		return 0
	}
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) == 0 {
		return 0
	}
	bits := (len(b) - 1) * 8
	for top := b[0]; top > 0; top >>= 1 {
		bits++
	}
	return bits
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
				_, _, _ = ks.group.Do("fetch", func() (any, error) { return nil, ks.refresh() })
			}
		}
	}()
}

func (ks *keySet) close() {
	ks.cancel()
	ks.wg.Wait()
}
