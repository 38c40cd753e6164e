package otelm2m

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/m2mauth/m2m/verify"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// reasons are the error.type values of m2m.server.token.verifications,
// each with the verify error it stands for and its outcome: "rejected"
// when the token or the request was refused, "error" when the verifier
// could not decide.
var reasons = []struct {
	err     error
	name    string
	outcome string
}{
	{verify.ErrNoToken, "no_token", "rejected"},
	{verify.ErrInvalidRequest, "invalid_request", "rejected"},
	{verify.ErrInsufficientScope, "insufficient_scope", "rejected"},
	{verify.ErrTokenTooLarge, "too_large", "rejected"},
	{verify.ErrMalformed, "malformed", "rejected"},
	{verify.ErrUnsupportedHeader, "unsupported_header", "rejected"},
	{verify.ErrAlgorithm, "algorithm", "rejected"},
	{verify.ErrUnknownKey, "unknown_key", "rejected"},
	{verify.ErrSignature, "signature", "rejected"},
	{verify.ErrExpired, "expired", "rejected"},
	{verify.ErrNotYetValid, "not_yet_valid", "rejected"},
	{verify.ErrMissingClaim, "missing_claim", "rejected"},
	{verify.ErrAudience, "audience", "rejected"},
	{verify.ErrIssuer, "issuer", "rejected"},
	{verify.ErrTokenType, "token_type", "rejected"},
	{verify.ErrScopeClaim, "scope_claim", "rejected"},
	{verify.ErrClientID, "client_id", "rejected"},
	{verify.ErrInactive, "inactive", "rejected"},
	{verify.ErrInvalidToken, "_OTHER", "rejected"}, // a rejection of a kind this list does not know
	{verify.ErrIntrospection, "introspection", "error"},
}

// The reason and outcome of an error verify does not define: a context
// error, or a verifier's own failure.
const (
	otherReason  = "_OTHER"
	otherOutcome = "error"
)

// Reason returns the error.type a Verifier records for err: "" for nil;
// for verify's errors (matched with errors.Is) one of "no_token",
// "invalid_request", "insufficient_scope", "expired", "signature",
// "audience", …, "inactive", or "introspection" when the verifier could
// not decide; "_OTHER" for anything else.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	if i := classify(err); i >= 0 {
		return reasons[i].name
	}
	return otherReason
}

// classify returns the index in reasons of err, -1 if none fits.
func classify(err error) int {
	for i, r := range reasons {
		if errors.Is(err, r.err) {
			return i
		}
	}
	return -1
}

// VerifierConfig configures a Verifier. The zero value of every field is
// its default.
type VerifierConfig struct {
	// Audience is the m2m.audience attribute of the decisions, normally
	// the verify.Config.Audience of the wrapped verifier. Optional.
	Audience string
	// MeterProvider creates the meter. Optional; default the global
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// Verifier wraps a *verify.Verifier and counts its decisions in
// m2m.server.token.verifications, by outcome ("accepted", "rejected", or
// "error" when the verifier could not decide) and reason (see Reason).
// Recording allocates nothing. It is safe for concurrent use and should
// be reused.
type Verifier struct {
	v        *verify.Verifier
	count    metric.Int64Counter
	accepted []metric.AddOption
	refused  [][]metric.AddOption // by index in reasons; read-only
	other    []metric.AddOption
}

// NewVerifier returns a Verifier recording v's decisions.
func NewVerifier(v *verify.Verifier, cfg VerifierConfig) (*Verifier, error) {
	if v == nil {
		return nil, fmt.Errorf("%w: the verifier is nil", ErrInvalidConfig)
	}
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	c, err := mp.Meter(ScopeName).Int64Counter("m2m.server.token.verifications", metric.WithUnit("{token}"),
		metric.WithDescription("Access tokens checked by the called service, by outcome and rejection reason."))
	if err != nil {
		return nil, fmt.Errorf("otelm2m: creating instruments: %w", err)
	}
	aud := AttrAudience.String(cfg.Audience)
	set := func(outcome, name string) []metric.AddOption {
		return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(aud, AttrOutcome.String(outcome), AttrErrorType.String(name)))}
	}
	w := &Verifier{v: v, count: c, other: set(otherOutcome, otherReason),
		accepted: []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(aud, AttrOutcome.String("accepted")))}}
	for _, r := range reasons {
		w.refused = append(w.refused, set(r.outcome, r.name))
	}
	return w, nil
}

// Verify calls the wrapped verifier's Verify and records its decision.
func (w *Verifier) Verify(ctx context.Context, raw string) (*verify.Claims, error) {
	c, err := w.v.Verify(ctx, raw)
	w.Record(ctx, err)
	return c, err
}

// Record counts a decision made elsewhere: nil is accepted, an error is
// rejected (or an error of the verifier) for Reason(err).
func (w *Verifier) Record(ctx context.Context, err error) {
	if err == nil {
		w.count.Add(ctx, 1, w.accepted...)
		return
	}
	if i := classify(err); i >= 0 {
		w.count.Add(ctx, 1, w.refused[i]...)
		return
	}
	w.count.Add(ctx, 1, w.other...)
}

// ObserveRPC records an m2mgrpc Guard's decision; its signature is that of
// m2mgrpc.GuardConfig.Observe:
//
//	m2mgrpc.GuardConfig{Verifier: v, Observe: otelVerifier.ObserveRPC, …}
func (w *Verifier) ObserveRPC(ctx context.Context, _ string, err error) { w.Record(ctx, err) }

// Middleware is the wrapped verifier's Middleware (the same 401 and 403
// answers) that also records each decision, "insufficient_scope" and
// "no_token" included. It decides by verifying the token once before the
// wrapped middleware does; the second check is answered from verify's
// token cache (unless verify.Config.CacheSize is negative, which doubles
// the signature work).
func (w *Verifier) Middleware(requiredScopes ...string) func(http.Handler) http.Handler {
	required := slices.Clone(requiredScopes)
	inner := w.v.Middleware(required...)
	return func(next http.Handler) http.Handler {
		h := inner(next)
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			w.Record(r.Context(), w.decide(r, required))
			h.ServeHTTP(rw, r)
		})
	}
}

// decide is what the wrapped middleware will decide for r.
func (w *Verifier) decide(r *http.Request, required []string) error {
	raw, err := verify.BearerToken(r)
	if err != nil {
		return err
	}
	c, err := w.v.Verify(r.Context(), raw)
	if err != nil {
		return err
	}
	for _, s := range required {
		if !c.HasScope(s) {
			return verify.ErrInsufficientScope
		}
	}
	return nil
}
