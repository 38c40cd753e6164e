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

// Rejection reasons, the error.type of m2m.server.token.verifications.
var reasons = []struct {
	err  error
	name string
}{
	{verify.ErrNoToken, "no_token"},
	{verify.ErrInsufficientScope, "insufficient_scope"},
	{verify.ErrTokenTooLarge, "too_large"},
	{verify.ErrMalformed, "malformed"},
	{verify.ErrUnsupportedHeader, "unsupported_header"},
	{verify.ErrAlgorithm, "algorithm"},
	{verify.ErrUnknownKey, "unknown_key"},
	{verify.ErrSignature, "signature"},
	{verify.ErrExpired, "expired"},
	{verify.ErrNotYetValid, "not_yet_valid"},
	{verify.ErrMissingClaim, "missing_claim"},
	{verify.ErrAudience, "audience"},
	{verify.ErrIssuer, "issuer"},
	{verify.ErrTokenType, "token_type"},
	{verify.ErrScopeClaim, "scope_claim"},
	{verify.ErrClientID, "client_id"},
}

// Reason returns the error.type a Verifier records for err: "" for nil,
// one of "no_token", "insufficient_scope", "expired", "signature",
// "audience", … for verify's errors (matched with errors.Is), and "_OTHER"
// for anything else.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "_OTHER"
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
// m2m.server.token.verifications, by outcome ("accepted", "rejected") and
// rejection reason (see Reason). Recording allocates nothing. It is safe
// for concurrent use and should be reused.
type Verifier struct {
	v        *verify.Verifier
	count    metric.Int64Counter
	accepted []metric.AddOption
	rejected map[string][]metric.AddOption // by reason; read-only
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
	w := &Verifier{v: v, count: c, rejected: map[string][]metric.AddOption{},
		accepted: []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(aud, AttrOutcome.String("accepted")))}}
	for _, name := range append(reasonNames(), "_OTHER") {
		w.rejected[name] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(aud, AttrOutcome.String("rejected"), AttrErrorType.String(name)))}
	}
	return w, nil
}

func reasonNames() []string {
	names := make([]string, 0, len(reasons))
	for _, r := range reasons {
		names = append(names, r.name)
	}
	return names
}

// Verify calls the wrapped verifier's Verify and records its decision.
func (w *Verifier) Verify(ctx context.Context, raw string) (*verify.Claims, error) {
	c, err := w.v.Verify(ctx, raw)
	w.Record(ctx, err)
	return c, err
}

// Record counts a decision made elsewhere: nil is accepted, an error is
// rejected for Reason(err).
func (w *Verifier) Record(ctx context.Context, err error) {
	if err == nil {
		w.count.Add(ctx, 1, w.accepted...)
		return
	}
	w.count.Add(ctx, 1, w.rejected[Reason(err)]...)
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
