package m2m

import (
	"encoding/json"
	"fmt"
	"log/slog"
)

// String describes the Client without its secret.
func (c *Client) String() string {
	cfg := &c.env.cfg
	if cfg.TokenURL == "" {
		return fmt.Sprintf("m2m.Client{Issuer: %q, ClientID: %q}", cfg.Issuer, cfg.ClientID)
	}
	return fmt.Sprintf("m2m.Client{TokenURL: %q, ClientID: %q}", cfg.TokenURL, cfg.ClientID)
}

// Format prints String for every verb, so no verb can show the secret.
func (c *Client) Format(f fmt.State, _ rune) { fmt.Fprint(f, c.String()) }

// String describes the source.
func (s *TokenSource) String() string {
	return fmt.Sprintf("m2m.TokenSource{Audience: %q, Scopes: %q}", s.spec.aud.Name, s.spec.aud.Scopes)
}

// Format prints String for every verb, so no verb can show a token.
func (s *TokenSource) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }

// String describes the Config without its secret or keys: the client
// authentication method stands for them.
func (cfg Config) String() string {
	return fmt.Sprintf("m2m.Config{TokenURL: %q, Issuer: %q, ClientID: %q, ClientSecret: [REDACTED], ClientAuth: %q, AuthStyle: %v, Encoding: %v, DPoP: %t}",
		cfg.TokenURL, cfg.Issuer, cfg.ClientID, cfg.clientAuth(), cfg.AuthStyle, cfg.Encoding, cfg.DPoPKey != nil)
}

// clientAuth names how the Config authenticates the client.
func (cfg Config) clientAuth() string {
	var m string
	switch {
	case cfg.ClientSecret != "" || cfg.ClientSecretFile != "":
		m = "client_secret"
	case cfg.PrivateKey != nil || cfg.PrivateKeyFile != "":
		m = "private_key_jwt"
	case cfg.ClientAssertion != nil || cfg.ClientAssertionFile != "":
		m = "client_assertion"
	case cfg.TLSCertFile != "":
		return "tls_client_auth"
	default:
		return "none"
	}
	if cfg.TLSCertFile != "" {
		m += "+tls_client_certificate"
	}
	return m
}

// Format prints String for every verb, so no verb can show the secret.
func (cfg Config) Format(f fmt.State, _ rune) { fmt.Fprint(f, cfg.String()) }

// LogValue makes slog log the Config without its secret.
func (cfg Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("token_url", cfg.TokenURL),
		slog.String("issuer", cfg.Issuer),
		slog.String("client_id", cfg.ClientID),
		slog.String("client_secret", redacted),
		slog.String("client_auth", cfg.clientAuth()),
		slog.String("auth_style", cfg.AuthStyle.String()),
		slog.String("encoding", cfg.Encoding.String()),
		slog.Bool("dpop", cfg.DPoPKey != nil),
	)
}

// MarshalJSON encodes the Config without its secret.
func (cfg Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		TokenURL, Issuer, ClientID, ClientSecret, ClientAuth, AuthStyle, Encoding string
		DPoP                                                                      bool
	}{cfg.TokenURL, cfg.Issuer, cfg.ClientID, redacted, cfg.clientAuth(), cfg.AuthStyle.String(), cfg.Encoding.String(), cfg.DPoPKey != nil})
}
