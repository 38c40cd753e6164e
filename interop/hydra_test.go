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

// TestMain starts Hydra from $HYDRA_BIN on free loopback ports, runs the
// tests and stops it. Without $HYDRA_BIN the tests are skipped, except in
// CI ($CI=true), where that is a failure.
func TestMain(m *testing.M) {
	bin := os.Getenv("HYDRA_BIN")
	if bin == "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "interop: HYDRA_BIN is not set; CI must run the Hydra interop tests (use ./scripts/test.sh)")
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "interop: HYDRA_BIN is not set: skipping the Hydra interop tests (./scripts/test.sh sets it)")
		os.Exit(0)
	}
	hydra.m2m = os.Getenv("M2M_BIN")
	stop, err := startHydra(bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
	code := m.Run()
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
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out")
	cmd.Env = append(os.Environ(),
		"DSN=memory",
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
		return srv, nil, fmt.Errorf("starting hydra: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
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
	// On a busy machine Hydra's first answers may take long (it creates
	// its keys on first use): ask again until the deadline.
	for {
		err := getJSON(srv.public+"/.well-known/openid-configuration", &disc)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return srv, nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
	srv.issuer = disc.Issuer
	return srv, stop, nil
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
