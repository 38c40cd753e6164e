package redisstore_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/m2mauth/m2m"
	"github.com/m2mauth/m2m/redisstore"
)

// Two replicas of one service share a token: the authorization server
// sees one request.
func Example() {
	// The authorization server's token endpoint, counting requests.
	var requests atomic.Int32
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"token-%d","token_type":"bearer","expires_in":3600}`, n)
	}))
	defer as.Close()

	// Yours: redis.NewClient(&redis.Options{Addr: "redis:6379", ContextTimeoutEnabled: true})
	rdb := redisstore.NewExampleClient()
	defer rdb.Close()

	for replica := range 2 {
		store, err := redisstore.New(rdb, redisstore.Options{EncryptionContext: "prod"})
		if err != nil {
			log.Fatal(err)
		}
		c, err := m2m.New(m2m.Config{
			TokenURL:     as.URL + "/oauth/token",
			ClientID:     "task-service",
			ClientSecret: "task-service-secret",
			Store:        store,
		})
		if err != nil {
			log.Fatal(err)
		}
		calendar, err := c.Source(m2m.Audience{Name: "event", Scopes: []string{"event.view"}, URL: "https://calendar.internal"})
		if err != nil {
			log.Fatal(err)
		}
		tok, err := calendar.TokenContext(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("replica %d: %s\n", replica, tok.AccessToken)
		c.Close()
	}
	fmt.Println("token requests:", requests.Load())
	// Output:
	// replica 0: token-1
	// replica 1: token-1
	// token requests: 1
}
