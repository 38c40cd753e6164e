package verify

import (
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"
)

// cache remembers verified tokens by the SHA-256 of their exact bytes, so
// a token presented again skips parsing and the signature check. It is
// bounded and safe for concurrent use.
type cache struct {
	max int
	mu  sync.RWMutex
	m   map[[32]byte]*Claims // guarded by mu
}

func newCache(max int) *cache {
	return &cache{max: max, m: make(map[[32]byte]*Claims)}
}

// hashToken hashes raw without copying it: SHA-256 only reads its input.
func hashToken(raw string) [32]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
}

func (c *cache) get(key [32]byte) (*Claims, bool) {
	c.mu.RLock()
	cl, ok := c.m[key]
	c.mu.RUnlock()
	return cl, ok
}

// drop forgets one token (its key left the JWKS, or it expired).
func (c *cache) drop(key [32]byte) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}

// put remembers a verified token. When full it first drops expired
// entries, then arbitrary ones down to 90%, so the bound always holds.
func (c *cache) put(key [32]byte, cl *Claims, now time.Time, leeway time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k, v := range c.m {
			if !now.Before(v.ExpiresAt.Add(leeway)) {
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
	c.m[key] = cl
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
