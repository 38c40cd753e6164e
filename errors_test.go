package m2m

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/m2mauth/m2m/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTokenErrorScrubsEveryField: a server echoing the secret, in any
// encoding, anywhere, and cut at any limit, never gets it into a
// TokenError, its message, or a log.
func TestTokenErrorScrubsEveryField(t *testing.T) {
	t.Parallel()
	basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(testID) + ":" + url.QueryEscape(testSecret)))
	forms := map[string]string{
		"raw":          testSecret,
		"query":        url.QueryEscape(testSecret),
		"path":         url.PathEscape(testSecret),
		"json unicode": `\u0073\u0033cr3t`, // the start of the secret, \u-escaped; completed below
		"basic":        basic,
	}
	// The \u form of the whole secret, as a server's JSON encoder may
	// write it.
	var u strings.Builder
	for _, r := range testSecret {
		fmt.Fprintf(&u, `\u%04x`, r)
	}
	forms["json unicode"] = u.String()
	for name, form := range forms {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// The form sits across each field's limit, so a cut-then-scrub
			// would leave half of it.
			across := func(limit int) string { return strings.Repeat("x", limit-5) + form + "tail" }
			body := fmt.Sprintf(`{"error":"%s","error_description":"%s","error_uri":"%s"}`,
				across(wire.MaxErrorCode), across(wire.MaxErrorDescription), across(wire.MaxErrorURI))
			ts := newTokenServer(t)
			ts.set(func(ts *tokenServer) {
				ts.reply = func(w http.ResponseWriter, r *http.Request) bool {
					w.Header().Set("Location", "https://elsewhere.test/?"+across(wire.MaxLocation-25))
					w.WriteHeader(http.StatusFound)
					fmt.Fprint(w, body)
					return true
				}
			})
			c, _ := newTestClient(t, ts, nil)
			_, err := mustSource(t, c, eventAudience).TokenContext(context.Background())
			var te *TokenError
			require.ErrorAs(t, err, &te)
			for field, v := range map[string]string{
				"ErrorCode": te.ErrorCode, "ErrorDescription": te.ErrorDescription, "ErrorURI": te.ErrorURI,
				"Hint": te.Hint, "Body": string(te.Body), "Error()": err.Error(), "%+v": fmt.Sprintf("%+v", te),
			} {
				for _, f := range forms {
					assert.NotContains(t, v, f[:6], "%s holds the start of a secret form", field)
				}
			}
		})
	}
}

// TestTokenErrorBodyCutAtTheLimit: a body cut by the 1 MiB limit in the
// middle of the secret keeps no part of it.
func TestTokenErrorBodyCutAtTheLimit(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.set(func(ts *tokenServer) {
		ts.reply = func(w http.ResponseWriter, r *http.Request) bool {
			w.WriteHeader(http.StatusBadRequest)
			pad := strings.Repeat("x", wire.MaxBody-8)
			fmt.Fprint(w, pad+testSecret+strings.Repeat("y", 100))
			return true
		}
	})
	c, _ := newTestClient(t, ts, nil)
	_, err := mustSource(t, c, eventAudience).TokenContext(context.Background())
	var te *TokenError
	require.ErrorAs(t, err, &te)
	require.Len(t, te.Body, wire.MaxBody-8+len("[REDACTED]"))
	assert.NotContains(t, string(te.Body), testSecret[:4])
}
