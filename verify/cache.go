package verify

import (
	"crypto/sha256"
	"hash"
	"strings"
	"sync"
)

// entry is what the cache remembers of one accepted token. Times are Unix
// nanoseconds (compact, and compared without time.Time's monotonic
// logic); 0 means none.
type entry struct {
	claims *Claims
	key    *key  // the JWT's signing key; nil for an introspected token
	sole   bool  // key was found as the JWKS's only key (no kid)
	exp    int64 // exp plus leeway
	nbf    int64 // nbf minus leeway
	until  int64 // an introspection answer is asked again from here
}

// unusable reports whether e can no longer be used at now (Unix ns).
func (e *entry) unusable(now int64) bool {
	return (e.exp != 0 && now >= e.exp) || (e.until != 0 && now >= e.until)
}

// cache remembers accepted tokens by the SHA-256 of their exact bytes, so
// a token presented again skips parsing, the signature check and the
// introspection request; the token itself is never kept. It is bounded
// and safe for concurrent use.
type cache struct {
	max int
	mu  sync.RWMutex
	m   map[[32]byte]entry // guarded by mu
}

func newCache(max int) *cache {
	return &cache{max: max, m: make(map[[32]byte]entry)}
}

// hasher is a pooled SHA-256 state with room for its output, so that
// hashing a token twice over allocates nothing.
type hasher struct {
	h   hash.Hash
	out [sha256.Size]byte
}

var hashers = sync.Pool{New: func() any { return &hasher{h: sha256.New()} }}

// hashToken returns the SHA-256 of raw, the cache key. When raw has two
// dots it also returns, from the same pass, the SHA-256 of raw up to the
// second: a JWS signing input, whose digest an RS256, PS256 or ES256
// check needs anyway. raw is read in place, never copied.
func hashToken(raw string) (key, signing [32]byte, ok bool) {
	d2 := -1
	if d1 := strings.IndexByte(raw, '.'); d1 >= 0 {
		if j := strings.IndexByte(raw[d1+1:], '.'); j >= 0 {
			d2 = d1 + 1 + j
		}
	}
	if d2 < 0 {
		return sha256.Sum256(bytesOf(raw)), signing, false
	}
	hs := hashers.Get().(*hasher)
	hs.h.Reset()
	hs.h.Write(bytesOf(raw[:d2]))
	signing = [32]byte(hs.h.Sum(hs.out[:0]))
	hs.h.Write(bytesOf(raw[d2:]))
	key = [32]byte(hs.h.Sum(hs.out[:0]))
	hashers.Put(hs)
	return key, signing, true
}

func (c *cache) get(h [32]byte) (entry, bool) {
	c.mu.RLock()
	e, ok := c.m[h]
	c.mu.RUnlock()
	return e, ok
}

// drop forgets one token.
func (c *cache) drop(h [32]byte) {
	c.mu.Lock()
	delete(c.m, h)
	c.mu.Unlock()
}

// put remembers an accepted token. When full it first drops entries that
// can no longer be used, then arbitrary ones down to 90%, so the bound
// always holds.
func (c *cache) put(h [32]byte, e entry, now int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k, v := range c.m {
			if v.unusable(now) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < c.max*9/10 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[h] = e
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
