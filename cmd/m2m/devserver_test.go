package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/m2mauth/m2m/internal/testmain"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startDevserver runs the devserver command in-process until the test
// ends and returns its base URL and output.
func startDevserver(t *testing.T, args ...string) (string, *testmain.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut testmain.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"devserver", "--addr", "127.0.0.1:0"}, args...), &out, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
		assert.Contains(t, errOut.String(), "stopped")
	})
	re := regexp.MustCompile(`token endpoint: (http://\S+)/auth/oauth/token`)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "Stop it with Ctrl-C") }, 30*time.Second, 5*time.Millisecond, errOut.String())
	return re.FindStringSubmatch(out.String())[1], &out
}

func TestDevserverCommand(t *testing.T) {
	t.Parallel()
	base, out := startDevserver(t, "--api-key", "k", "--token-lifetime", "10m", "--client", "task:s3:cr:et:event.view,event.create:event,file")
	assert.Contains(t, out.String(), "NOT for production")
	assert.NotContains(t, out.String(), "api-key:", "a given api key is not printed")
	assert.Contains(t, out.String(), `client:         task (scope "event.view event.create", audience event file)`)

	tok, errOut, code := runCmd(t, "token", "--token-url", base+"/auth/oauth/token", "--client-id", "task", "--client-secret-file", secretFile(t, "s3:cr:et"), "--audience", "file", "--json")
	require.Equal(t, 0, code, errOut)
	var resp struct {
		ExpiresIn int `json:"expires_in"`
	}
	require.NoError(t, json.Unmarshal([]byte(tok), &resp))
	assert.True(t, resp.ExpiresIn > 500 && resp.ExpiresIn <= 600, "expires_in %d: --token-lifetime 10m", resp.ExpiresIn)

	dir := t.TempDir()
	p := filepath.Join(dir, "clients.json")
	require.NoError(t, os.WriteFile(p, []byte(`[{"clientId":"a","clientSecret":"b","scope":"x","audience":["y"]}]`), 0o600))
	_, out2 := startDevserver(t, "--clients", p)
	assert.Contains(t, out2.String(), "client:         a")
	assert.Contains(t, out2.String(), "api-key:", "a generated api key is printed")

	for _, args := range [][]string{
		{"devserver", "--client", "a::s:a"},
		{"devserver", "--clients", filepath.Join(dir, "missing.json")},
		{"devserver", "--addr", "256.0.0.1:0"},
		{"devserver", "--token-lifetime", "-1s"},
	} {
		_, errOut, code := runCmd(t, args...)
		assert.NotEqual(t, 0, code, args)
		assertOneLine(t, errOut, strings.Join(args, " "))
		assert.NotContains(t, errOut, "devserver: devserver")
	}
}

// The example Calendar Service lets through only tokens of audience event
// with the scope each method needs.
func TestDevserverCalendar(t *testing.T) {
	t.Parallel()
	base, _ := startDevserver(t, "--client", "task:s3cret:event.view,event.create,file.view:event,file")
	token := func(audience, scope string) string {
		out, errOut, code := runCmd(t, "token", "--token-url", base+"/auth/oauth/token", "--client-id", "task", "--client-secret-file", secretFile(t, "s3cret"), "--audience", audience, "--scope", scope)
		require.Equal(t, 0, code, errOut)
		return strings.TrimSpace(out)
	}
	create, view, file := token("event", "event.create"), token("event", "event.view"), token("file", "file.view")
	cases := []struct {
		name, method, token, body string
		status                    int
		want                      string
	}{
		{"create", http.MethodPost, create, `{"title":"standup"}`, http.StatusCreated, `"title":"standup","created_by":"task"`},
		{"create without a body", http.MethodPost, create, "", http.StatusCreated, `"title":"untitled"`},
		{"bad body", http.MethodPost, create, "{", http.StatusBadRequest, "must be JSON"},
		{"list", http.MethodGet, view, "", http.StatusOK, `"events":[`},
		{"list needs event.view", http.MethodGet, create, "", http.StatusForbidden, "insufficient_scope"},
		{"create needs event.create", http.MethodPost, view, "", http.StatusForbidden, "insufficient_scope"},
		{"another audience's token", http.MethodGet, file, "", http.StatusUnauthorized, "wrong audience"},
		{"no token", http.MethodGet, "", "", http.StatusUnauthorized, "bearer token is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, base+"/calendar/events", strings.NewReader(tc.body))
			require.NoError(t, err)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			assert.Equal(t, tc.status, resp.StatusCode, string(b))
			assert.Contains(t, string(b), tc.want)
		})
	}
}

// The built binary stops cleanly, exit code 0, on SIGINT and SIGTERM:
// what Ctrl-C and a process manager send.
func TestDevserverSignals(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary with")
	}
	bin := filepath.Join(t.TempDir(), "m2m")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(bin, "devserver", "--addr", "127.0.0.1:0")
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			require.NoError(t, cmd.Start())
			exited := make(chan error, 1)
			ready := make(chan struct{})
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					if strings.HasPrefix(sc.Text(), "Stop it with") {
						close(ready)
					}
				}
				exited <- cmd.Wait()
			}()
			select {
			case <-ready:
			case err := <-exited:
				t.Fatalf("exited before it was ready: %v; %s", err, stderr.String())
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				<-exited
				t.Fatal("not ready within a minute")
			}
			require.NoError(t, cmd.Process.Signal(sig))
			select {
			case err := <-exited:
				require.NoError(t, err, "exit code 0; stderr: %s", stderr.String())
				assert.Equal(t, "m2m devserver: stopped\n", stderr.String())
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				<-exited
				t.Fatalf("still running a minute after %s", sig)
			}
		})
	}
}
