package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2m"
	"github.com/redis/go-redis/v9"
)

// The fleet tests run each replica as a separate OS process: the test
// binary itself, started again with fleetRoleEnv set, which TestMain
// hands to fleetReplicaMain instead of running tests.
const (
	fleetRoleEnv   = "REDISSTORE_FLEET_REPLICA"
	fleetConfigEnv = "REDISSTORE_FLEET_CONFIG"
)

// replicaConfig is what one replica does, passed as JSON in fleetConfigEnv.
type replicaConfig struct {
	Name                             string // sent as replicaHeader with every request
	TokenURL, ClientID, ClientSecret string
	CalleeURL                        string
	RedisAddr                        string // "" runs without a Store
	EncryptionContext                string
	StoreTimeout                     time.Duration // 0 for m2m's default
	Duration, Interval               time.Duration
}

// replicaResult is what a replica reports, as one JSON line on stdout.
type replicaResult struct {
	Requests, Failures int
	FirstFailure       string
	MaxLatency         time.Duration
	// Fetches counts the token requests this replica made (EventFetch),
	// StoreHits the tokens it took from the Store, StoreDown and StoreUp
	// the Store's changes of state it saw.
	Fetches, StoreHits, StoreDown, StoreUp int64
}

// fleetReplicaMain runs one replica and returns its exit code.
func fleetReplicaMain() int {
	var cfg replicaConfig
	if err := json.Unmarshal([]byte(os.Getenv(fleetConfigEnv)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "replica: bad config:", err)
		return 2
	}
	res, err := runReplica(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 1
	}
	return 0
}

// eventCounter is an Observer counting the events the fleet tests check.
type eventCounter struct {
	fetches, storeHits, storeDown, storeUp atomic.Int64
}

func (c *eventCounter) Observe(ev m2m.Event) {
	switch ev.Kind {
	case m2m.EventFetch:
		c.fetches.Add(1)
	case m2m.EventStoreHit:
		c.storeHits.Add(1)
	case m2m.EventStoreDown:
		c.storeDown.Add(1)
	case m2m.EventStoreUp:
		c.storeUp.Add(1)
	}
}

// runReplica calls the callee through an m2m Transport every Interval for
// Duration and reports how that went.
func runReplica(cfg replicaConfig) (replicaResult, error) {
	var res replicaResult
	events := &eventCounter{}
	tagged := tagTransport{name: cfg.Name, base: http.DefaultTransport}
	mcfg := m2m.Config{TokenURL: cfg.TokenURL, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		HTTPClient: &http.Client{Transport: tagged, Timeout: 30 * time.Second}, StoreTimeout: cfg.StoreTimeout, Observer: events}
	if cfg.RedisAddr != "" {
		rdb := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr, ContextTimeoutEnabled: true})
		defer rdb.Close()
		store, err := New(rdb, Options{EncryptionContext: cfg.EncryptionContext})
		if err != nil {
			return res, err
		}
		mcfg.Store = store
	}
	c, err := m2m.New(mcfg)
	if err != nil {
		return res, err
	}
	defer c.Close()
	src, err := c.Source(m2m.Audience{Name: "callee", URL: cfg.CalleeURL})
	if err != nil {
		return res, err
	}
	hc := &http.Client{Transport: m2m.NewTransport(tagged, src), Timeout: time.Minute}
	for end := time.Now().Add(cfg.Duration); time.Now().Before(end); time.Sleep(cfg.Interval) {
		start := time.Now()
		err := call(hc, cfg.CalleeURL+"/work")
		res.MaxLatency = max(res.MaxLatency, time.Since(start))
		res.Requests++
		if err != nil {
			res.Failures++
			if res.FirstFailure == "" {
				res.FirstFailure = fmt.Sprintf("at %s: %v", start.Format(time.TimeOnly+".000"), err)
			}
		}
	}
	res.Fetches, res.StoreHits = events.fetches.Load(), events.storeHits.Load()
	res.StoreDown, res.StoreUp = events.storeDown.Load(), events.storeUp.Load()
	return res, nil
}

func call(hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callee answered %s", resp.Status)
	}
	return nil
}

// replicaHeader names the replica on its token requests and callee calls,
// so the test server knows who fetched each token and who used it.
const replicaHeader = "X-Fleet-Replica"

// tagTransport adds replicaHeader to every request.
type tagTransport struct {
	name string
	base http.RoundTripper
}

func (t tagTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set(replicaHeader, t.name)
	return t.base.RoundTrip(req)
}
