package m2m

import (
	"encoding/json"
	"fmt"
	"log/slog"
)

// String describes the Client without its secret.
func (c *Client) String() string {
	return fmt.Sprintf("m2m.Client{TokenURL: %q, ClientID: %q}", c.cfg.TokenURL, c.cfg.ClientID)
}

// Format prints String for every verb, so no verb can show the secret.
func (c *Client) Format(f fmt.State, _ rune) { fmt.Fprint(f, c.String()) }

// String describes the source.
func (s *TokenSource) String() string {
	return fmt.Sprintf("m2m.TokenSource{Audience: %q, Scopes: %q}", s.aud.Name, s.aud.Scopes)
}

// Format prints String for every verb, so no verb can show a token.
func (s *TokenSource) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }

// String describes the Config without its secret.
func (cfg Config) String() string {
	return fmt.Sprintf("m2m.Config{TokenURL: %q, ClientID: %q, ClientSecret: [REDACTED], AuthStyle: %v, Encoding: %v}",
		cfg.TokenURL, cfg.ClientID, cfg.AuthStyle, cfg.Encoding)
}

// Format prints String for every verb, so no verb can show the secret.
func (cfg Config) Format(f fmt.State, _ rune) { fmt.Fprint(f, cfg.String()) }

// LogValue makes slog log the Config without its secret.
func (cfg Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("token_url", cfg.TokenURL),
		slog.String("client_id", cfg.ClientID),
		slog.String("client_secret", "[REDACTED]"),
		slog.String("auth_style", cfg.AuthStyle.String()),
		slog.String("encoding", cfg.Encoding.String()),
	)
}

// MarshalJSON encodes the Config without its secret.
func (cfg Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		TokenURL, ClientID, ClientSecret, AuthStyle, Encoding string
	}{cfg.TokenURL, cfg.ClientID, "[REDACTED]", cfg.AuthStyle.String(), cfg.Encoding.String()})
}
