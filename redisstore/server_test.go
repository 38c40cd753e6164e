package redisstore

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/m2mauth/m2m/internal/testmain"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// srv is the redis-server the tests share, started by TestMain.
var srv *redisServer

// TestMain starts redis-server ($REDIS_SERVER_BIN, else the one on $PATH)
// on a free loopback port, runs the tests, stops it and checks for leaked
// goroutines. Without a redis-server the tests are skipped, except in CI
// ($CI=true), where that is a failure.
func TestMain(m *testing.M) {
	if os.Getenv(fleetRoleEnv) != "" {
		os.Exit(fleetReplicaMain())
	}
	bin := os.Getenv("REDIS_SERVER_BIN")
	if bin == "" {
		bin, _ = exec.LookPath("redis-server")
	}
	if bin == "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "redisstore: no redis-server (REDIS_SERVER_BIN unset, none on PATH); CI must run these tests (use ./scripts/test.sh)")
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "redisstore: no redis-server (REDIS_SERVER_BIN unset, none on PATH): skipping the tests (./scripts/redis.sh installs it)")
		os.Exit(0)
	}
	redis.SetLogger(discardLogger{}) // go-redis logs failed dials while a server starts
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		fmt.Fprintf(os.Stderr, "redisstore: testing against %s", out)
	}
	port, err := freePort()
	if err == nil {
		srv, err = startRedis(bin, port)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "redisstore:", err)
		os.Exit(1)
	}
	code := m.Run()
	srv.stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// freePort returns a loopback port nothing listens on right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// redisServer is one redis-server process on 127.0.0.1, without
// persistence. It can be killed and started again on the same port.
type redisServer struct {
	bin  string
	port int
	dir  string
	logs *testmain.Buffer
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

func startRedis(bin string, port int) (*redisServer, error) {
	dir, err := os.MkdirTemp("", "redisstore-")
	if err != nil {
		return nil, err
	}
	s := &redisServer{bin: bin, port: port, dir: dir}
	if err := s.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Addr returns the server's host:port.
func (s *redisServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// start starts the process and waits until it answers PING.
func (s *redisServer) start() error {
	s.logs = &testmain.Buffer{}
	s.cmd = exec.Command(s.bin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(s.port),
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--daemonize", "no", "--loglevel", "warning")
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	setProcessGroup(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	done := make(chan struct{})
	s.done = done
	cmd := s.cmd
	go func() { cmd.Wait(); close(done) }()

	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited:\n%s", s.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("redis-server not ready after 20 s: %v\n%s", err, s.logs.String())
		}
	}
}

// kill kills the process group at once and waits for the process.
func (s *redisServer) kill() {
	killProcessGroup(s.cmd)
	<-s.done
}

// stop kills the server and removes its directory.
func (s *redisServer) stop() {
	s.kill()
	os.RemoveAll(s.dir)
}

// client returns a go-redis client of the server, closed when t ends.
func (s *redisServer) client(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// discardLogger silences go-redis's logger.
type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...any) {}
