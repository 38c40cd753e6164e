package verify

import (
	"encoding/json"
	"slices"
	"time"
)

// Kind says which flow issued an access token. The zero value is never the
// Kind of a verified token.
type Kind int

const (
	// KindClientCredentials is an OAuth2 access token a client obtained for
	// itself (client-credentials grant): no user is involved. SuperTokens:
	// stt 1 without sessionHandle; RFC 9068 servers (Hydra, introspection):
	// sub equal to client_id (RFC 9068 §2.2).
	KindClientCredentials Kind = iota + 1
	// KindUserDelegated is an OAuth2 access token issued to a client on a
	// user's behalf (authorization-code flow). SuperTokens: stt 1 with a
	// sessionHandle; RFC 9068 servers: a sub other than client_id.
	KindUserDelegated
	// KindSession is a SuperTokens session access token (stt 0 with a
	// sessionHandle), accepted only with Config.AcceptSessionTokens.
	KindSession
)

// String returns "client_credentials", "user_delegated" or "session".
func (k Kind) String() string {
	switch k {
	case KindClientCredentials:
		return "client_credentials"
	case KindUserDelegated:
		return "user_delegated"
	case KindSession:
		return "session"
	}
	return "unknown"
}

// Claims are the verified claims of an access token: of a JWT's payload,
// or of an RFC 7662 introspection answer. Verify and ClaimsFromContext
// return shared values (the verifier caches them): treat them as
// read-only. Their methods are safe for concurrent use.
type Claims struct {
	// Kind says which flow issued the token.
	Kind Kind
	// Subject is "sub": for a client-credentials token the client, for a
	// user-delegated or session token the user.
	Subject string
	// ClientID is "client_id".
	ClientID string
	// Audience is "aud", a list whether the token had a string or an array.
	Audience []string
	// Scopes are the token's scopes: the "scp" array or the "scope" string
	// (RFC 9068 §2.2.3, RFC 7662 §2.2) split at spaces. Nil when the token
	// has neither: it carries no scopes.
	Scopes []string
	// SessionHandle is SuperTokens' "sessionHandle": set for session and
	// user-delegated SuperTokens tokens.
	SessionHandle string
	// Issuer is "iss".
	Issuer string
	// ID is "jti".
	ID string
	// ExpiresAt, IssuedAt and NotBefore are "exp", "iat" and "nbf", in UTC;
	// zero when absent.
	ExpiresAt, IssuedAt, NotBefore time.Time

	json string // the JSON object the claims were read from, for Decode
}

// HasScope reports whether the token carries scope, compared exactly.
func (c *Claims) HasScope(scope string) bool { return slices.Contains(c.Scopes, scope) }

// Decode unmarshals the token's claims (the JWT payload, or the
// introspection answer) into v with encoding/json, for claims that Claims
// has no field for:
//
//	var extra struct{ GID string `json:"gid"` }
//	err := claims.Decode(&extra)
func (c *Claims) Decode(v any) error { return json.Unmarshal([]byte(c.json), v) }

// missing returns the first of scopes the token lacks, or "".
func (c *Claims) missing(scopes []string) string {
	for _, s := range scopes {
		if !c.HasScope(s) {
			return s
		}
	}
	return ""
}

// Claim names Verify reads, as bits of payload.has.
const (
	hasIss = 1 << iota
	hasSub
	hasClientID
	hasJTI
	hasAud
	hasExp
	hasIat
	hasNbf
	hasScp
	hasScope
	hasSTT
	hasSessionHandle
	hasActive
	hasTokenUse
)

// stt values, as read (SuperTokens' token type claim).
const (
	sttSession = 0
	sttAccess  = 1
	sttID      = 2
	sttOther   = 3 // present, but not the number 0, 1 or 2
)

// payload is what readPayload learns from a claims object.
type payload struct {
	has                                 int
	iss, sub, clientID, jti, sessionHdl string
	tokenUse                            string
	aud, scp                            []string
	scope                               string
	exp, iat, nbf                       numericTime
	stt                                 int
	active                              bool
}

// readPayload reads a claims object (exactly one JSON object). Errors are
// a *syntaxError for JSON the reader refuses, or a rejection for a claim
// of the wrong type or range.
func readPayload(s string, p *payload) error {
	r := jsonReader{s: s}
	if err := r.objectStart(); err != nil {
		return err
	}
	var names nameSet
	for first := true; ; first = false {
		name, more, err := r.member(first, &names)
		if err != nil {
			return err
		}
		if !more {
			return r.end()
		}
		var dst *string
		bit := 0
		switch name {
		case "iss":
			dst, bit = &p.iss, hasIss
		case "sub":
			dst, bit = &p.sub, hasSub
		case "client_id":
			dst, bit = &p.clientID, hasClientID
		case "jti":
			dst, bit = &p.jti, hasJTI
		case "sessionHandle":
			dst, bit = &p.sessionHdl, hasSessionHandle
		case "token_use":
			dst, bit = &p.tokenUse, hasTokenUse
		case "scope":
			dst, bit = &p.scope, hasScope
		case "aud":
			p.has |= hasAud
			switch r.kind() {
			case '"':
				a, err := r.str()
				if err != nil {
					return err
				}
				p.aud = []string{a}
			case '[':
				list, ok, err := r.stringList()
				if err != nil {
					return err
				}
				if !ok {
					return reject(ErrAudience, "aud must be a string or an array of strings")
				}
				p.aud = list
			default:
				if err := r.skip(); err != nil {
					return err
				}
				return reject(ErrAudience, "aud must be a string or an array of strings")
			}
			continue
		case "scp":
			p.has |= hasScp
			list, ok, err := r.stringList()
			if err != nil {
				return err
			}
			if !ok {
				return reject(ErrScopeClaim, "scp must be an array of strings")
			}
			p.scp = list
			continue
		case "exp", "iat", "nbf":
			if r.kind() != '0' {
				if err := r.skip(); err != nil {
					return err
				}
				return reject(ErrMalformed, "%s must be a NumericDate (a number)", name)
			}
			lit, err := r.number()
			if err != nil {
				return err
			}
			t, ok := numericDate(lit)
			if !ok {
				return reject(ErrMalformed, "%s %s is not a NumericDate between 1970 and 9999", name, shown(lit))
			}
			switch name {
			case "exp":
				p.exp, p.has = t, p.has|hasExp
			case "iat":
				p.iat, p.has = t, p.has|hasIat
			default:
				p.nbf, p.has = t, p.has|hasNbf
			}
			continue
		case "stt":
			p.has |= hasSTT
			p.stt = sttOther
			if r.kind() == '0' {
				lit, err := r.number()
				if err != nil {
					return err
				}
				switch lit {
				case "0":
					p.stt = sttSession
				case "1":
					p.stt = sttAccess
				case "2":
					p.stt = sttID
				}
				continue
			}
		case "active":
			if r.kind() == 't' {
				lit, err := r.literal()
				if err != nil {
					return err
				}
				p.active = lit == "true"
				p.has |= hasActive
				continue
			}
		}
		if dst == nil {
			if err := r.skip(); err != nil {
				return err
			}
			continue
		}
		if r.kind() != '"' {
			if err := r.skip(); err != nil {
				return err
			}
			return reject(ErrMalformed, "%s must be a string", name)
		}
		if *dst, err = r.str(); err != nil {
			return err
		}
		p.has |= bit
	}
}

// scopeToken reports whether s is a scope-token of RFC 6749 §3.3:
// one or more of %x21 / %x23-5B / %x5D-7E.
func scopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7E || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// scopes returns the token's scopes from scope and scp: either alone, or
// both when they name the same set.
func (p *payload) scopes() ([]string, error) {
	var fromScope []string
	if p.has&hasScope != 0 && p.scope != "" {
		fromScope = make([]string, 0, 4)
		rest := p.scope
		for {
			i := 0
			for i < len(rest) && rest[i] != ' ' {
				i++
			}
			if !scopeToken(rest[:i]) {
				return nil, reject(ErrScopeClaim, "scope must be scope tokens separated by single spaces (RFC 6749 §3.3)")
			}
			fromScope = append(fromScope, rest[:i])
			if i == len(rest) {
				break
			}
			rest = rest[i+1:]
		}
	}
	for _, s := range p.scp {
		if !scopeToken(s) {
			return nil, reject(ErrScopeClaim, "scp holds %s, not a scope token (RFC 6749 §3.3)", quoted(s))
		}
	}
	switch {
	case p.has&hasScp == 0:
		return fromScope, nil
	case p.has&hasScope == 0:
		return p.scp, nil
	}
	if !sameSet(fromScope, p.scp) {
		return nil, reject(ErrScopeClaim, "scope and scp disagree: scope has %s, scp has %s", quotedList(fromScope), quotedList(p.scp))
	}
	return p.scp, nil
}

// sameSet reports whether a and b hold the same strings, in any order and
// number.
func sameSet(a, b []string) bool {
	for _, s := range a {
		if !slices.Contains(b, s) {
			return false
		}
	}
	for _, s := range b {
		if !slices.Contains(a, s) {
			return false
		}
	}
	return true
}

// toTime converts a present NumericDate to a UTC time.
func (t numericTime) toTime() time.Time { return time.Unix(t.sec, t.nsec).UTC() }
