package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// replayCache remembers the DPoP proofs accepted (RFC 9449 §11.1), by a
// hash of their key's thumbprint and jti, each until its iat leaves the
// window, so that a proof is accepted once. It is bounded: when full of
// proofs still inside their window it refuses new ones rather than forget
// one that could then be replayed. Checking and recording a proof happen
// under one lock, so of many requests carrying the same proof at once
// exactly one passes. It is safe for concurrent use.
//
// Why a heap beside the map: proofs leave in the order of their iat, not
// of their arrival (a client's clock may be ahead or behind by up to the
// window), and the heap finds the ones due without scanning the map.
type replayCache struct {
	max int

	mu   sync.Mutex
	seen map[[16]byte]int64 // proof → Unix ns from which it may go; guarded by mu
	due  []replayEntry      // min-heap on at; guarded by mu
}

type replayEntry struct {
	at int64
	k  [16]byte
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: map[[16]byte]int64{}}
}

// replayKey hashes a proof's identity: its key's thumbprint and its jti.
func replayKey(jkt, jti string) [16]byte {
	hs := hashers.Get().(*hasher)
	hs.h.Reset()
	hs.h.Write(bytesOf(jkt))
	hs.h.Write(bytesOf("\x00"))
	hs.h.Write(bytesOf(jti))
	k := [16]byte(hs.h.Sum(hs.out[:0]))
	hashers.Put(hs)
	return k
}

// add records proof k, to be remembered until until (Unix ns), at now.
// It fails with ErrReplay when k is remembered already, and with
// ErrReplayCacheFull when the cache holds max proofs none of which may go.
func (rc *replayCache) add(k [16]byte, until, now int64) error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.prune(now)
	if _, ok := rc.seen[k]; ok {
		return rejectProof(ErrReplay, "this jti was seen before with this key, within the proof window")
	}
	if len(rc.seen) >= rc.max {
		return ErrReplayCacheFull
	}
	rc.seen[k] = until
	rc.push(replayEntry{at: until, k: k})
	return nil
}

// prune forgets the proofs whose time is up at now: a proof remembered
// until t still passes the iat check at t, so it goes only after.
func (rc *replayCache) prune(now int64) {
	for len(rc.due) > 0 && rc.due[0].at < now {
		delete(rc.seen, rc.due[0].k)
		rc.pop()
	}
}

// retryAfter is how long until the first remembered proof may go.
func (rc *replayCache) retryAfter(now int64) time.Duration {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.due) == 0 {
		return 0
	}
	return time.Duration(rc.due[0].at - now)
}

func (rc *replayCache) len() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.seen)
}

func (rc *replayCache) push(e replayEntry) {
	rc.due = append(rc.due, e)
	for i := len(rc.due) - 1; i > 0; {
		parent := (i - 1) / 2
		if rc.due[parent].at <= rc.due[i].at {
			break
		}
		rc.due[parent], rc.due[i] = rc.due[i], rc.due[parent]
		i = parent
	}
}

func (rc *replayCache) pop() {
	last := len(rc.due) - 1
	rc.due[0] = rc.due[last]
	rc.due = rc.due[:last]
	for i := 0; ; {
		l, r, min := 2*i+1, 2*i+2, i
		if l < last && rc.due[l].at < rc.due[min].at {
			min = l
		}
		if r < last && rc.due[r].at < rc.due[min].at {
			min = r
		}
		if min == i {
			return
		}
		rc.due[i], rc.due[min] = rc.due[min], rc.due[i]
		i = min
	}
}

// nonceSource makes and checks server nonces (RFC 9449 §9) without
// keeping any: the nonce of interval number e is e and an HMAC-SHA-256 of
// e, in base64url, valid during interval e and the next. It is safe for
// concurrent use.
type nonceSource struct {
	every  int64 // the interval, in ns
	secret []byte
	cur    atomic.Pointer[nonces]
}

// nonces are the nonces valid during one interval.
type nonces struct {
	epoch      int64
	now, prior string // of this interval and the one before
}

func newNonceSource(every time.Duration, secret []byte) *nonceSource {
	return &nonceSource{every: int64(every), secret: secret}
}

// at returns the nonces valid at now.
func (ns *nonceSource) at(now time.Time) *nonces {
	e := now.UnixNano() / ns.every
	if n := ns.cur.Load(); n != nil && n.epoch == e {
		return n
	}
	n := &nonces{epoch: e, now: ns.make(e), prior: ns.make(e - 1)}
	ns.cur.Store(n)
	return n
}

func (ns *nonceSource) make(e int64) string {
	var buf [8 + 16]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(e))
	m := hmac.New(sha256.New, ns.secret)
	m.Write(buf[:8])
	copy(buf[8:], m.Sum(nil))
	return b64.EncodeToString(buf[:])
}

// valid reports whether nonce is current at now.
func (ns *nonceSource) valid(nonce string, now time.Time) bool {
	n := ns.at(now)
	return nonce != "" && (nonce == n.now || nonce == n.prior)
}
