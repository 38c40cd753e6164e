package verifypeers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestFalseAccepts signs, with the issuer's own key, tokens that no
// verifier should accept, and prints which ones each verifier accepts
// (run with -v for the table). m2m must refuse every one.
func TestFalseAccepts(t *testing.T) {
	e := setup(t)
	vs := verifiers(t, e)
	claims := func(mod func(map[string]any)) string {
		c := e.claims("j")
		mod(c)
		b, _ := json.Marshal(c)
		return string(b)
	}
	hdr := `{"alg":"RS256","kid":"` + kid + `","typ":"JWT"}`
	good := claims(func(map[string]any) {})
	body := strings.TrimSuffix(good, "}")
	hour := time.Now().Add(time.Hour).Unix()
	cases := []struct{ name, header, payload string }{
		{"no exp", hdr, claims(func(c map[string]any) { delete(c, "exp") })},
		{"iat an hour ahead", hdr, claims(func(c map[string]any) { c["iat"] = hour })},
		{"nbf an hour ahead", hdr, claims(func(c map[string]any) { c["nbf"] = hour })},
		{"exp 1e300 (never expires)", hdr, strings.Replace(good, fmt.Sprintf(`"exp":%d`, hour), `"exp":1e300`, 1)},
		{"a second aud member, ours last", hdr, `{"aud":["file"],` + strings.TrimPrefix(good, "{")},
		{"a second aud member, ours first", hdr, body + `,"aud":["file"]}`},
		{"data after the claims object", hdr, good + `{"aud":["file"]}`},
		{"a duplicate alg in the header", `{"alg":"none","alg":"RS256","kid":"` + kid + `"}`, good},
		{"an unknown crit header", `{"alg":"RS256","kid":"` + kid + `","crit":["x"],"x":1}`, good},
		{"invalid UTF-8 in a claim", hdr, body + `,"name":"` + "\xff" + `"}`},
	}
	accepted := map[string][]string{}
	for _, tc := range cases {
		tok := e.sign(tc.header, tc.payload)
		for _, v := range vs {
			if v.verify(context.Background(), tok) == nil {
				accepted[v.name] = append(accepted[v.name], tc.name)
			}
		}
	}
	var table strings.Builder
	table.WriteString("\n| verifier | accepts (of the tokens above) |\n|---|---|\n")
	for _, v := range vs {
		list := strings.Join(accepted[v.name], "; ")
		if list == "" {
			list = "none"
		}
		fmt.Fprintf(&table, "| %s | %s |\n", v.name, list)
	}
	t.Log(table.String())
	for _, name := range []string{"m2m", "m2m-cache-off"} {
		if len(accepted[name]) > 0 {
			t.Errorf("%s accepts %v", name, accepted[name])
		}
	}
}
