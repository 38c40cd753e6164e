package m2m

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOneRequestPerKeyUnderBursts runs 100 cold bursts of 1000 callers.
// Each burst asks a new key while its callers keep arriving before,
// during and after the fetch ends, the window in which a caller that found
// no token could start a second fetch. Every burst must make exactly one
// token request and hand every caller the same token.
func TestOneRequestPerKeyUnderBursts(t *testing.T) {
	t.Parallel()
	const bursts, callers = 100, 1000
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	sources := make([]*TokenSource, bursts)
	for i := range sources {
		sources[i] = mustSource(t, c, Audience{Name: fmt.Sprintf("aud-%d", i)})
	}
	tokens := make([][]string, bursts)
	for i := range tokens {
		tokens[i] = make([]string, callers)
	}
	starts := make([]chan struct{}, bursts)
	for i := range starts {
		starts[i] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for w := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range bursts {
				<-starts[b]
				tok, err := sources[b].TokenContext(context.Background())
				if err == nil {
					tokens[b][w] = tok.AccessToken
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for b := range bursts {
		close(starts[b])
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("callers still waiting after 2 minutes: a fetch never ended or a waiter was never woken")
	}
	assert.EqualValues(t, bursts, ts.hits.Load(), "one token request per key")
	for b := range bursts {
		require.NotEmpty(t, tokens[b][0], "burst %d", b)
		for w := range callers {
			require.Equal(t, tokens[b][0], tokens[b][w], "burst %d caller %d got another token", b, w)
		}
	}
}
