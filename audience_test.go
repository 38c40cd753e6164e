package m2m

import (
	"context"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAudienceRequestShape(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, func(cfg *Config) { cfg.EndpointParams = url.Values{"tenant": {"t1"}, "region": {"eu"}} })
	calendar := mustSource(t, c, Audience{Name: "calendar", Resource: "https://calendar.test/", Scopes: []string{"event.view", "event.create"},
		FixedScopes: []string{"urn:zitadel:iam:org:project:id:42:aud"}, Params: url.Values{"tenant": {"t2"}}, OmitAudienceParam: true})
	ctx := WithScopes(context.Background(), "event.create")
	_, err := calendar.TokenContext(ctx)
	require.NoError(t, err)
	form := ts.form(0)
	assert.Equal(t, "https://calendar.test/", form.Get("resource"))
	assert.Equal(t, "event.create urn:zitadel:iam:org:project:id:42:aud", form.Get("scope"), "fixed scopes survive narrowing")
	assert.Equal(t, "t2", form.Get("tenant"), "the audience's params override the client's")
	assert.Equal(t, "eu", form.Get("region"))
	_, sent := form["audience"]
	assert.False(t, sent, "OmitAudienceParam sends no audience")
}

func TestAudiencesDifferingInShapeNeverShareAToken(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	shapes := []Audience{
		{Name: "api"},
		{Name: "api", Resource: "https://a.test/"},
		{Name: "api", Resource: "https://b.test/"},
		{Name: "api", Params: url.Values{"x": {"1"}}},
		{Name: "api", Params: url.Values{"x": {"2"}}},
		{Name: "api", FixedScopes: []string{"f"}},
		{Name: "api", OmitAudienceParam: true},
	}
	seen := map[string]bool{}
	for _, a := range shapes {
		tok, err := mustSource(t, c, a).TokenContext(context.Background())
		require.NoError(t, err)
		assert.False(t, seen[tok.AccessToken], "%+v shares a token", a)
		seen[tok.AccessToken] = true
	}
	assert.EqualValues(t, len(shapes), ts.hits.Load())
	// The same shape, written in another order, is the same key.
	before := ts.hits.Load()
	_, err := mustSource(t, c, Audience{Name: "api", Params: url.Values{"x": {"1"}}}).TokenContext(context.Background())
	require.NoError(t, err)
	assert.Equal(t, before, ts.hits.Load())
}

func TestAudienceChecks(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	c, _ := newTestClient(t, ts, nil)
	for name, a := range map[string]Audience{
		"reserved param":     {Name: "a", Params: url.Values{"scope": {"x"}}},
		"reserved resource":  {Name: "a", Params: url.Values{"resource": {"x"}}},
		"relative resource":  {Name: "a", Resource: "/calendar"},
		"resource fragment":  {Name: "a", Resource: "https://a.test/#x"},
		"bad fixed scope":    {Name: "a", FixedScopes: []string{"a b"}},
		"control in params":  {Name: "a", Params: url.Values{"x": {"a\nb"}}},
		"space in the name":  {Name: "a b"},
		"query in the URL":   {Name: "a", URL: "https://a.test/?x=1"},
		"plain http URL":     {Name: "a", URL: "http://a.test/"},
		"empty URL w/ extra": {Name: "a", ExtraURLs: []string{"https://b.test"}},
	} {
		_, err := c.Source(a)
		assert.ErrorIs(t, err, ErrInvalidConfig, name)
	}
}
