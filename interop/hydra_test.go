package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
// folder $OIDC_PROVIDER_DIR (both from ./scripts/test.sh) on free loopback
// ports, runs the tests and stops both. A server whose variable is unset
// has its tests skipped, except in CI ($CI=true), where that is a failure.
func TestMain(m *testing.M) {
	bin, nodeDir := os.Getenv("HYDRA_BIN"), os.Getenv("OIDC_PROVIDER_DIR")
	for name, v := range map[string]string{"HYDRA_BIN": bin, "OIDC_PROVIDER_DIR": nodeDir} {
		if v != "" {
			continue
		}
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "interop: %s is not set; CI must run every interop test (use ./scripts/test.sh)\n", name)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "interop: %s is not set: skipping its server's tests (./scripts/test.sh sets it)\n", name)
	}
	hydra.m2m = os.Getenv("M2M_BIN")
	var stops []func()
	stopAll := func() {
		for _, stop := range stops {
			stop()
		}
	}
	for _, s := range []struct {
		arg   string
		start func(string) (func(), error)
	}{{bin, startHydra}, {nodeDir, startNode}} {
		if s.arg == "" {
			continue
		}
		stop, err := s.start(s.arg)
		if err != nil {
			stopAll()
			fmt.Fprintln(os.Stderr, "interop:", err)
			os.Exit(1)
		}
		stops = append(stops, stop)
	}
	code := m.Run()
	stopAll()
	os.Exit(code)
}

// needHydra skips t when TestMain did not start Hydra.
func needHydra(t *testing.T) {
	t.Helper()
	if hydra.public == "" {
		t.Skip("HYDRA_BIN is not set")
	}
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
	pub, err := freePort()
	if err != nil {
		return nil, err
	}
	adm, err := freePort()
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 24)
	rand.Read(secret)
	hydra.public = fmt.Sprintf("http://127.0.0.1:%d", pub)
	hydra.admin = fmt.Sprintf("http://127.0.0.1:%d", adm)
	// A SQLite file, not DSN=memory: Hydra's in-memory database vanishes
	// when its last connection closes, which a cancelled query on a busy
	// machine can cause ("Unable to locate the table").
	dir, err := os.MkdirTemp("", "m2m-interop-hydra-")
	if err != nil {
		return nil, err
	}
	dsn := "DSN=sqlite://" + filepath.Join(dir, "hydra.sqlite") + "?_fk=true"
	migrate := exec.Command(bin, "migrate", "sql", "up", "-e", "--yes")
	migrate.Env = append(os.Environ(), dsn)
	if out, err := migrate.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("hydra migrate: %w:\n%s", err, out)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out")
	cmd.Env = append(os.Environ(),
		dsn,
		"SECRETS_SYSTEM="+hex.EncodeToString(secret),
		"STRATEGIES_ACCESS_TOKEN=jwt",
		"URLS_SELF_ISSUER="+hydra.public,
		"SERVE_PUBLIC_HOST=127.0.0.1", fmt.Sprintf("SERVE_PUBLIC_PORT=%d", pub),
		"SERVE_ADMIN_HOST=127.0.0.1", fmt.Sprintf("SERVE_ADMIN_PORT=%d", adm),
		"LOG_LEVEL=warn",
	)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// Hydra dies with the test binary, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting hydra: %w", err)
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
	for _, u := range []string{hydra.public + "/health/ready", hydra.admin + "/health/ready"} {
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
				return nil, fmt.Errorf("hydra exited (%v):\n%s", err, logs.String())
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				stop()
				return nil, fmt.Errorf("hydra not ready after 60 s:\n%s", logs.String())
			}
		}
	}
	var disc struct {
		Issuer string `json:"issuer"`
	}
	// The first discovery request creates the ID-token signing keys
	// (RSA-4096); on a busy machine Hydra may drop that connection before
	// it answers, so ask again for a while.
	keysDeadline := time.Now().Add(5 * time.Minute)
	for {
		err := getJSON(hydra.public+"/.well-known/openid-configuration", &disc)
		if err == nil {
			break
		}
		if time.Now().After(keysDeadline) {
			stop()
			return nil, fmt.Errorf("hydra discovery: %w:\n%s", err, logs.String())
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("hydra exited (%v):\n%s", err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	hydra.issuer = disc.Issuer
	// Hydra creates its RSA-4096 access-token signing key on the first
	// token request, which on a busy machine can outlast a token fetch's
	// timeout. Create it here, before any test runs.
	ctx, cancel := context.WithDeadline(context.Background(), keysDeadline)
	defer cancel()
	if err := createKey(ctx, "hydra.jwt.access-token", "interop-first"); err != nil {
		stop()
		return nil, fmt.Errorf("%w:\n%s", err, logs.String())
	}
	return stop, nil
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

// admin sends a JSON request to Hydra's admin API.
func admin(ctx context.Context, method, path string, body any, want int, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, hydra.admin+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// createKey has Hydra generate an RS256 key kid in key set set. Making an
// RSA-4096 key can outlast Hydra's 10 s write timeout on a busy machine,
// which drops the answer but not the key: then it waits for the key to
// appear.
func createKey(ctx context.Context, set, kid string) error {
	err := admin(ctx, http.MethodPost, "/admin/keys/"+set,
		map[string]string{"alg": "RS256", "use": "sig", "kid": kid}, http.StatusCreated, nil)
	for err != nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("hydra: key %s/%s not created: %w", set, kid, err)
		case <-time.After(200 * time.Millisecond):
		}
		err = admin(ctx, http.MethodGet, "/admin/keys/"+set+"/"+kid, nil, http.StatusOK, nil)
	}
	return nil
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
