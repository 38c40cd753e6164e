package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClientsOnCore(t *testing.T) {
	t.Parallel()
	auth := startAuth(t)
	core := []string{"--core-url", auth.URL(), "--api-key", "test-key"}
	out, errOut, code := runCmd(t, append([]string{"clients", "create", "--name", "Task Service", "--scope", "event.view event.create", "--audience", "event", "--token-lifetime", "5s"}, core...)...)
	require.Equal(t, 0, code, errOut)
	m := regexp.MustCompile(`client_id: (\S+)\nclient_secret: (\S+)`).FindStringSubmatch(out)
	require.Len(t, m, 3)
	assert.Contains(t, errOut, "Store the client secret safely")

	// The new client works, with the lifetime it was given.
	tok, errOut, code := runCmd(t, "token", "--token-url", auth.TokenURL(), "--client-id", m[1], "--client-secret-file", secretFile(t, m[2]), "--audience", "event", "--json")
	require.Equal(t, 0, code, errOut)
	var resp struct {
		ExpiresIn int `json:"expires_in"`
	}
	require.NoError(t, json.Unmarshal([]byte(tok), &resp))
	assert.True(t, resp.ExpiresIn > 0 && resp.ExpiresIn <= 5, "expires_in %d: the client's 5 s, not the server's hour", resp.ExpiresIn)

	out, _, code = runCmd(t, append([]string{"clients", "list"}, core...)...)
	require.Equal(t, 0, code)
	assert.Contains(t, out, m[1])
	assert.Contains(t, out, "Task Service")
	assert.NotContains(t, out, m[2], "list never shows a secret")

	out, _, code = runCmd(t, append([]string{"clients", "delete", "--client-id", m[1]}, core...)...)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "deleted "+m[1])

	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"delete a client that does not exist", append([]string{"clients", "delete", m[1]}, core...), 1, fmt.Sprintf("m2m clients delete: no client with id %q: nothing deleted", m[1])},
		{"wrong api key", []string{"clients", "list", "--core-url", auth.URL(), "--api-key", "nope"}, 1, "answered 401, want 200"},
		{"wrong api key says which flag", []string{"clients", "list", "--core-url", auth.URL(), "--api-key", "nope"}, 1, "check --api-key or $M2M_API_KEY"},
		{"no api key", []string{"clients", "list", "--core-url", auth.URL()}, 2, "needs --api-key or $M2M_API_KEY"},
		{"both servers", []string{"clients", "list", "--core-url", auth.URL(), "--hydra-admin-url", auth.URL()}, 2, "exactly one"},
		{"no server", []string{"clients", "list"}, 2, "exactly one"},
		{"create without name", append([]string{"clients", "create"}, core...), 2, "--name is required"},
		{"delete without id", append([]string{"clients", "delete"}, core...), 2, "--client-id is required"},
		{"plain http to a remote core", []string{"clients", "list", "--core-url", "http://core.example:3567", "--api-key", "k"}, 2,
			`--core-url "http://core.example:3567" is plain http on a non-loopback host; use https or give --insecure-http`},
		{"plain http to a remote Hydra", []string{"clients", "list", "--hydra-admin-url", "http://hydra.example:4445"}, 2, "give --insecure-http"},
		{"unreachable", []string{"clients", "list", "--core-url", "http://127.0.0.1:1", "--api-key", "k"}, 1, "connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, errOut, code := runCmd(t, tc.args...)
			assert.Equal(t, tc.code, code)
			assert.Contains(t, errOut, tc.msg)
			assertOneLine(t, errOut, tc.name)
		})
	}
}

// --output env prints export lines a shell can eval, whatever the secret
// holds.
func TestClientsCreateExport(t *testing.T) {
	t.Parallel()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, s := range []string{"plain", "it's", `a"b$c\d`, "sp ace;`x`", "'"} {
		line := "export M2M_CLIENT_SECRET=" + shellQuote(s)
		out, err := exec.Command(sh, "-c", line+`; printf %s "$M2M_CLIENT_SECRET"`).Output()
		require.NoError(t, err, line)
		assert.Equal(t, s, string(out), line)
	}

	auth := startAuth(t)
	out, errOut, code := runCmd(t, "clients", "create", "--core-url", auth.URL(), "--api-key", "test-key", "--name", "Task", "--scope", "event.view", "--audience", "event", "--output", "env")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `^export M2M_CLIENT_ID='[^']+'\nexport M2M_CLIENT_SECRET='[^']+'\n$`, out)
	got, err := exec.Command(sh, "-c", out+`printf '%s %s' "$M2M_CLIENT_ID" "$M2M_CLIENT_SECRET"`).Output()
	require.NoError(t, err)
	id, sec, _ := strings.Cut(string(got), " ")
	_, errOut, code = runCmd(t, "token", "--token-url", auth.TokenURL(), "--client-id", id, "--client-secret-file", secretFile(t, sec), "--audience", "event")
	assert.Equal(t, 0, code, errOut)
}

func TestClientsOnHydra(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	clients := map[string]hydraClient{}
	hydra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/admin/clients":
			var c hydraClient
			json.NewDecoder(r.Body).Decode(&c)
			c.ClientID, c.ClientSecret = fmt.Sprintf("h-%d", len(clients)+1), "hydra-secret"
			clients[c.ClientID] = c
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(c)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/clients":
			var list []hydraClient
			for _, c := range clients {
				c.ClientSecret = ""
				list = append(list, c)
			}
			json.NewEncoder(w).Encode(list)
		case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/admin/clients/"):
			id := strings.TrimPrefix(r.URL.Path, "/admin/clients/")
			if _, ok := clients[id]; !ok {
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprint(w, `{"error":"Unable to locate the resource"}`)
				return
			}
			delete(clients, id)
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	defer hydra.Close()
	h := []string{"--hydra-admin-url", hydra.URL}
	out, errOut, code := runCmd(t, append([]string{"clients", "create", "--name", "Task", "--scope", "event.create", "--audience", "event", "--auth-method", "post", "--token-lifetime", "3s"}, h...)...)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "client_id: h-1\nclient_secret: hydra-secret")
	mu.Lock()
	assert.Equal(t, hydraClient{ClientID: "h-1", ClientSecret: "hydra-secret", ClientName: "Task", GrantTypes: []string{"client_credentials"},
		Scope: "event.create", Audience: []string{"event"}, AuthMethod: "client_secret_post", Lifespan: "3s"}, clients["h-1"])
	mu.Unlock()
	out, _, code = runCmd(t, append([]string{"clients", "list"}, h...)...)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "h-1")
	_, _, code = runCmd(t, append(append([]string{"clients", "delete"}, h...), "h-1")...)
	require.Equal(t, 0, code)
	_, errOut, code = runCmd(t, append(append([]string{"clients", "delete"}, h...), "h-1")...)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, `no client with id "h-1"`)
	_, errOut, code = runCmd(t, "clients", "list", "--hydra-admin-url", hydra.URL+"/nope")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "answered 404, want 200")
}
