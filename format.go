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

// String describes the Config without its secret.
func (cfg Config) String() string {
	return fmt.Sprintf("m2m.Config{TokenURL: %q, Issuer: %q, ClientID: %q, ClientSecret: [REDACTED], AuthStyle: %v, Encoding: %v}",
		cfg.TokenURL, cfg.Issuer, cfg.ClientID, cfg.AuthStyle, cfg.Encoding)
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
		slog.String("auth_style", cfg.AuthStyle.String()),
		slog.String("encoding", cfg.Encoding.String()),
	)
}

// MarshalJSON encodes the Config without its secret.
func (cfg Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		TokenURL, Issuer, ClientID, ClientSecret, AuthStyle, Encoding string
	}{cfg.TokenURL, cfg.Issuer, cfg.ClientID, redacted, cfg.AuthStyle.String(), cfg.Encoding.String()})
}
