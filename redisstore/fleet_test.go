package redisstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fleet: replicas are separate OS processes (see replica_test.go)
// calling one callee with tokens from one authorization server, each
// scenario on a client of its own so that they can run side by side.
const (
	fleetSize     = 8
	tokenLifetime = 2 * time.Second
	fleetDuration = 20 * time.Second
	callInterval  = 100 * time.Millisecond
	// sharingTimeout is the StoreTimeout of the scenarios that count
	// shared tokens. These tests load a 2-core machine with 35 race-built
	// processes (and must pass with its cores busy besides), where the
	// default 50 ms is often spent waiting to be scheduled; each call past
	// it is, by design, a token fetched locally, which would blur the
	// counts. The slow-Redis scenario keeps the default.
	sharingTimeout = 500 * time.Millisecond
)

// TestFleet proves what the Store is for, with real processes, a real
// redis-server and real time. All scenarios run at once, on clients of
// their own (35 processes for 20 s), then each checks its results: counts
// and absences of failure, never a speed.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("the fleet tests run replicas for 20 s")
	}
	auth := newFleetAuth(t, tokenLifetime)
	scenarios := []scenario{
		fleetShared(t, auth),
		fleetRestart(t, auth),
		fleetWrongContext(t, auth),
		fleetSlowRedis(t, auth),
	}
	var all []replicaConfig
	for _, sc := range scenarios {
		all = append(all, sc.replicas...)
	}
	run := fleetRun{start: time.Now()}
	for _, sc := range scenarios {
		if sc.during != nil {
			sc.during(run.start)
		}
	}
	results := runFleet(t, all)
	run.end = time.Now()
	for _, sc := range scenarios {
		n := len(sc.replicas)
		t.Run(sc.name, func(t *testing.T) { sc.check(t, run, results[:n]) })
		results = results[n:]
	}
	assert.Zero(t, auth.unknownTokens(), "callee requests with a token the server never issued")
}

// A scenario is a group of replicas run with all the others, and the
// check of their results.
type scenario struct {
	name     string
	replicas []replicaConfig
	during   func(start time.Time) // starts what happens during the run
	check    func(t *testing.T, run fleetRun, results []replicaResult)
}

// fleetRun is when the fleet ran.
type fleetRun struct{ start, end time.Time }

// perLifetime converts n token requests over d into requests per token
// lifetime.
func perLifetime(n int, d time.Duration) float64 {
	return float64(n) / (float64(d) / float64(tokenLifetime))
}

// fleetShared runs two fleets of eight, one sharing tokens through Redis
// and one without a Store: the first asks as often as one replica alone,
// the second eight times as often.
func fleetShared(t *testing.T, auth *fleetAuth) scenario {
	shared := auth.register("shared")
	shared.RedisAddr, shared.StoreTimeout = srv.Addr(), sharingTimeout
	alone := auth.register("alone")
	return scenario{
		name:     "shared vs alone",
		replicas: append(replicas(shared, fleetSize), replicas(alone, fleetSize)...),
		check: func(t *testing.T, run fleetRun, results []replicaResult) {
			requireNoFailures(t, auth, "shared", results[:fleetSize])
			requireNoFailures(t, auth, "alone", results[fleetSize:])
			// Steady state: from the first token's expiry on, when every
			// replica has started (a cold start of 35 processes at once
			// keeps a busy machine's store calls past StoreTimeout).
			from, steady := run.start.Add(tokenLifetime), fleetDuration-tokenLifetime
			withStore := perLifetime(auth.tokenRequests("shared", from, run.end), steady)
			without := perLifetime(auth.tokenRequests("alone", from, run.end), steady)
			t.Logf("fleet: %d replicas, %v tokens, %v: token requests per lifetime: %.2f with the store, %.2f without (%.1f×); one replica alone: %.2f; at start: %d with the store, %d without",
				fleetSize, tokenLifetime, fleetDuration, withStore, without, without/withStore, without/fleetSize,
				auth.tokenRequests("shared", run.start, from), auth.tokenRequests("alone", run.start, from))
			// With the store the fleet asks about as often as one replica
			// alone: a store call past StoreTimeout (a loaded machine) is
			// a local fetch now and then, so allow up to twice that.
			// Without it, every replica asks.
			assert.LessOrEqual(t, withStore, 2*without/fleetSize, "the fleet with a store asks about as one replica")
			assert.GreaterOrEqual(t, without, 3*withStore, "without a store every replica asks")
			var hits, down int64
			borrowed := 0
			for i, r := range results[:fleetSize] {
				hits += r.StoreHits
				down += r.StoreDown
				borrowed += auth.borrowedBy(fmt.Sprintf("shared-%d", i))
			}
			assert.Positive(t, hits)
			assert.Positive(t, borrowed, "no replica used a token another one fetched")
			for i := range fleetSize {
				assert.Zero(t, auth.borrowedBy(fmt.Sprintf("alone-%d", i)), "a replica without a store used another's token")
			}
			t.Logf("fleet: with the store: %d tokens taken from it, %d of %d requests with a token another replica fetched; %d times a replica found the store failing",
				hits, borrowed, sumRequests(results[:fleetSize]), down)
		},
	}
}

// fleetRestart kills the fleet's redis-server after 6 s and starts it
// again at 12 s: no request fails, the replicas fetch on their own while
// it is down and share again once it is back.
func fleetRestart(t *testing.T, auth *fleetAuth) scenario {
	port, err := freePort()
	require.NoError(t, err)
	rs, err := startRedis(srv.bin, port)
	require.NoError(t, err)
	t.Cleanup(rs.stop)
	cfg := auth.register("restart")
	cfg.RedisAddr, cfg.StoreTimeout = rs.Addr(), sharingTimeout
	restarted := make(chan error, 1)
	return scenario{
		name:     "redis killed and restarted",
		replicas: replicas(cfg, fleetSize),
		during: func(time.Time) {
			go func() {
				time.Sleep(6 * time.Second)
				rs.kill()
				time.Sleep(6 * time.Second)
				restarted <- rs.start()
			}()
		},
		check: func(t *testing.T, run fleetRun, results []replicaResult) {
			require.NoError(t, <-restarted)
			requireNoFailures(t, auth, "restart", results)
			at := func(d time.Duration) time.Time { return run.start.Add(d) }
			before := perLifetime(auth.tokenRequests("restart", at(2*time.Second), at(6*time.Second)), 4*time.Second)
			down := perLifetime(auth.tokenRequests("restart", at(7*time.Second), at(12*time.Second)), 5*time.Second)
			after := perLifetime(auth.tokenRequests("restart", at(15*time.Second), at(20*time.Second)), 5*time.Second)
			t.Logf("fleet: redis killed at 6 s, restarted at 12 s: token requests per lifetime: %.2f before, %.2f while down, %.2f after",
				before, down, after)
			assert.GreaterOrEqual(t, down, 4.0, "while Redis is down, replicas fetch on their own")
			assert.Less(t, after, down/3, "after the restart the fleet shares again")
			for i, r := range results {
				assert.Positive(t, r.StoreDown, "replica %d never saw the store down", i)
				assert.Positive(t, r.StoreUp, "replica %d never saw the store back", i)
			}
		},
	}
}

// fleetWrongContext runs a fleet in which one replica has another
// EncryptionContext: it can read none of the others' tokens (nor they
// its), and every request still succeeds.
func fleetWrongContext(t *testing.T, auth *fleetAuth) scenario {
	cfg := auth.register("context")
	cfg.RedisAddr, cfg.EncryptionContext, cfg.StoreTimeout = srv.Addr(), "prod", sharingTimeout
	cfgs := replicas(cfg, fleetSize)
	cfgs[0].EncryptionContext = "staging"
	return scenario{
		name:     "wrong encryption context",
		replicas: cfgs,
		check: func(t *testing.T, run fleetRun, results []replicaResult) {
			requireNoFailures(t, auth, "context", results)
			// It may take back a token it saved itself, never one of
			// the others'.
			assert.Zero(t, auth.borrowedBy(cfgs[0].Name), "the replica with the wrong context used another's token")
			var hits int64
			borrowed := 0
			for i, r := range results[1:] {
				hits += r.StoreHits
				borrowed += auth.borrowedBy(cfgs[i+1].Name)
			}
			assert.Positive(t, borrowed, "the other replicas share")
			t.Logf("fleet: one replica of %d with the wrong encryption context: %d of its requests with another's token, %d of the others' (%d store hits); %.2f token requests per lifetime",
				fleetSize, auth.borrowedBy(cfgs[0].Name), borrowed, hits, perLifetime(auth.tokenRequests("context", run.start, run.end), fleetDuration))
		},
	}
}

// fleetSlowRedis puts a proxy that delays all traffic by 5 s between three
// replicas and Redis: no request fails or waits for Redis, because
// StoreTimeout (the default, 50 ms) ends every store call.
func fleetSlowRedis(t *testing.T, auth *fleetAuth) scenario {
	const delay = 5 * time.Second
	proxy := newSlowProxy(t, srv.Addr(), delay)
	cfg := auth.register("slow")
	cfg.RedisAddr = proxy.Addr()
	return scenario{
		name:     "slow redis",
		replicas: replicas(cfg, 3),
		check: func(t *testing.T, run fleetRun, results []replicaResult) {
			requireNoFailures(t, auth, "slow", results)
			var slowest time.Duration
			for i, r := range results {
				slowest = max(slowest, r.MaxLatency)
				assert.Positive(t, r.StoreDown, "replica %d never saw the store time out", i)
				assert.Zero(t, r.StoreHits, "replica %d", i)
				assert.Less(t, r.MaxLatency, delay, "replica %d waited for Redis", i)
			}
			t.Logf("fleet: Redis answering after %v: slowest request %v; %.2f token requests per lifetime for 3 replicas",
				delay, slowest.Round(time.Millisecond), perLifetime(auth.tokenRequests("slow", run.start, run.end), fleetDuration))
		},
	}
}

// replicas returns n copies of cfg with the default duration and pace,
// named after the client and their index.
func replicas(cfg replicaConfig, n int) []replicaConfig {
	if cfg.Duration == 0 {
		cfg.Duration = fleetDuration
	}
	cfg.Interval = callInterval
	out := make([]replicaConfig, n)
	for i := range out {
		out[i] = cfg
		out[i].Name = fmt.Sprintf("%s-%d", cfg.ClientID, i)
	}
	return out
}

func sumRequests(results []replicaResult) int {
	n := 0
	for _, r := range results {
		n += r.Requests
	}
	return n
}

// requireNoFailures checks that no replica saw a failed request and the
// callee rejected none of the client's tokens.
func requireNoFailures(t *testing.T, auth *fleetAuth, client string, results []replicaResult) {
	t.Helper()
	total := 0
	for i, r := range results {
		total += r.Requests
		assert.Zero(t, r.Failures, "replica %d: %d of %d requests failed; first %s", i, r.Failures, r.Requests, r.FirstFailure)
		assert.Positive(t, r.Requests, "replica %d", i)
	}
	accepted, rejected := auth.calls(client)
	assert.Zero(t, rejected, "the callee rejected %d of %s's tokens", rejected, client)
	assert.Equal(t, total, accepted, "%s: callee acceptances vs replica requests", client)
}

// runFleet runs one process per configuration at once and returns their
// results in the same order. The processes end on their own after their
// Duration; a stuck one is killed a minute later.
func runFleet(t *testing.T, cfgs []replicaConfig) []replicaResult {
	t.Helper()
	results := make([]replicaResult, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		conf, err := json.Marshal(cfg)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+time.Minute)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fleetRoleEnv+"=1", fleetConfigEnv+"="+string(conf))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		setProcessGroup(cmd)
		if err := cmd.Start(); err != nil {
			cancel()
			errs[i] = err
			continue
		}
		wg.Go(func() {
			defer cancel()
			if err := cmd.Wait(); err != nil {
				errs[i] = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
				return
			}
			if err := json.Unmarshal(stdout.Bytes(), &results[i]); err != nil {
				errs[i] = fmt.Errorf("result %q: %w", stdout.String(), err)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "replica %d", i)
	}
	return results
}
