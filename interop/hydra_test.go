package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hydra is the Ory Hydra the tests run against, started by TestMain.
var hydra struct {
	public, admin, issuer string
	m2m                   string // path of the m2m CLI
}

// TestMain starts Hydra from $HYDRA_BIN and node-oidc-provider from the
// folder $OIDC_PROVIDER_DIR (both set by ./scripts/test.sh) on free
// loopback ports, runs the tests and stops both. Without $HYDRA_BIN the
// tests are skipped, and without $OIDC_PROVIDER_DIR those of
// node-oidc-provider, except in CI ($CI=true), where either is a failure.
func TestMain(m *testing.M) {
	bin, nodeDir := os.Getenv("HYDRA_BIN"), os.Getenv("OIDC_PROVIDER_DIR")
	ci := os.Getenv("CI") == "true"
	switch {
	case ci && (bin == "" || nodeDir == ""):
		fmt.Fprintln(os.Stderr, "interop: HYDRA_BIN and OIDC_PROVIDER_DIR must be set; CI must run every interop test (use ./scripts/test.sh)")
		os.Exit(1)
	case bin == "":
		fmt.Fprintln(os.Stderr, "interop: HYDRA_BIN is not set: skipping the interop tests (./scripts/test.sh sets it)")
		os.Exit(0)
	case nodeDir == "":
		fmt.Fprintln(os.Stderr, "interop: OIDC_PROVIDER_DIR is not set: skipping the node-oidc-provider tests (./scripts/test.sh sets it)")
	}
	hydra.m2m = os.Getenv("M2M_BIN")
	stop, err := startHydra(bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
	stopNode := func() {}
	if nodeDir != "" {
		if stopNode, err = startNode(nodeDir); err != nil {
			stop()
			fmt.Fprintln(os.Stderr, "interop:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	stopNode()
	stop()
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

func startHydra(bin string) (stop func(), err error) {
	srv, stop, err := runHydra(bin, "STRATEGIES_ACCESS_TOKEN=jwt")
	hydra.public, hydra.admin, hydra.issuer = srv.public, srv.admin, srv.issuer
	return stop, err
}

// hydraServer is one running Hydra.
type hydraServer struct{ public, admin, issuer string }

// runHydra starts a Hydra on free loopback ports with env added to the
// base configuration, and waits until it is ready.
func runHydra(bin string, env ...string) (srv hydraServer, stop func(), err error) {
	pub, err := freePort()
	if err != nil {
		return srv, nil, err
	}
	adm, err := freePort()
	if err != nil {
		return srv, nil, err
	}
	secret := make([]byte, 24)
	rand.Read(secret)
	srv.public = fmt.Sprintf("http://127.0.0.1:%d", pub)
	srv.admin = fmt.Sprintf("http://127.0.0.1:%d", adm)
	// A SQLite file, not DSN=memory: Hydra's in-memory database vanishes
	// when its last connection closes, which a query cancelled on a busy
	// machine can cause ("Unable to locate the table").
	dir, err := os.MkdirTemp("", "m2m-interop-hydra-")
	if err != nil {
		return srv, nil, err
	}
	dsn := "DSN=sqlite://" + filepath.Join(dir, "hydra.sqlite") + "?_fk=true"
	migrate := exec.Command(bin, "migrate", "sql", "up", "-e", "--yes")
	migrate.Env = append(os.Environ(), dsn)
	if out, err := migrate.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return srv, nil, fmt.Errorf("hydra migrate: %w:\n%s", err, out)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out")
	cmd.Env = append(os.Environ(),
		dsn,
		"SECRETS_SYSTEM="+hex.EncodeToString(secret),
		"URLS_SELF_ISSUER="+srv.public,
		"SERVE_PUBLIC_HOST=127.0.0.1", fmt.Sprintf("SERVE_PUBLIC_PORT=%d", pub),
		"SERVE_ADMIN_HOST=127.0.0.1", fmt.Sprintf("SERVE_ADMIN_PORT=%d", adm),
		"LOG_LEVEL=warn",
	)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// Hydra dies with the test binary, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return srv, nil, fmt.Errorf("starting hydra: %w", err)
	}
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		os.RemoveAll(dir)
		exited <- err
	}()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, u := range []string{srv.public + "/health/ready", srv.admin + "/health/ready"} {
		for {
			resp, err := http.Get(u)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case err := <-exited:
				return srv, nil, fmt.Errorf("hydra exited (%v):\n%s", err, logs.String())
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				stop()
				return srv, nil, fmt.Errorf("hydra not ready after 60 s:\n%s", logs.String())
			}
		}
	}
	var disc struct {
		Issuer string `json:"issuer"`
	}
	// The first metadata request makes the ID-token keys (RSA-4096); on a
	// busy machine that can outlast Hydra's 10 s write timeout, which drops
	// the answer: ask again, for up to five minutes.
	keysDeadline := time.Now().Add(5 * time.Minute)
	for {
		err := getJSON(srv.public+"/.well-known/openid-configuration", &disc)
		if err == nil {
			break
		}
		if time.Now().After(keysDeadline) {
			stop()
			return srv, nil, fmt.Errorf("hydra metadata: %w:\n%s", err, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	srv.issuer = disc.Issuer
	// A JWT access-token signing key is made on the first token request,
	// which on a busy machine can outlast a token fetch's timeout: make it
	// now, before any test runs.
	if slices.Contains(env, "STRATEGIES_ACCESS_TOKEN=jwt") {
		ctx, cancel := context.WithDeadline(context.Background(), keysDeadline)
		defer cancel()
		if err := createKey(ctx, srv.admin, "hydra.jwt.access-token", "interop-first"); err != nil {
			stop()
			return srv, nil, fmt.Errorf("%w:\n%s", err, logs.String())
		}
	}
	return srv, stop, nil
}

// createKey has the Hydra whose admin API is at base make an RS256 key kid
// in key set set. An RSA-4096 key can take longer than Hydra's 10 s write
// timeout on a busy machine, which drops the answer but not the key: then
// it waits for the key to appear.
func createKey(ctx context.Context, base, set, kid string) error {
	err := adminAt(ctx, base, http.MethodPost, "/admin/keys/"+set,
		map[string]string{"alg": "RS256", "use": "sig", "kid": kid}, http.StatusCreated, nil)
	for err != nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("hydra: key %s/%s not made: %w", set, kid, err)
		case <-time.After(200 * time.Millisecond):
		}
		err = adminAt(ctx, base, http.MethodGet, "/admin/keys/"+set+"/"+kid, nil, http.StatusOK, nil)
	}
	return nil
}

func getJSON(u string, out any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", u, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// admin sends a JSON request to the admin API of the tests' Hydra.
func admin(ctx context.Context, method, path string, body any, want int, out any) error {
	return adminAt(ctx, hydra.admin, method, path, body, want, out)
}

// cli runs the m2m CLI and returns its stdout, failing the test on error.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cliErr(args...)
	if err != nil {
		t.Fatalf("m2m %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func cliErr(args ...string) (string, error) {
	if hydra.m2m == "" {
		return "", errors.New("M2M_BIN is not set")
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(hydra.m2m, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}
