package m2m

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2m/internal/clock"
	"github.com/stretchr/testify/require"
)

// The test side of JOSE: a verifier of compact JWS, written against the
// RFCs with the standard library, independent of the SDK's signing code.

// jws is a parsed compact JWS.
type jws struct {
	header, claims map[string]any
	input          string // header.payload, what was signed
	sig            []byte
}

func parseJWS(s string) (*jws, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	j := &jws{input: parts[0] + "." + parts[1]}
	for i, dst := range []*map[string]any{&j.header, &j.claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return nil, err
		}
	}
	var err error
	j.sig, err = base64.RawURLEncoding.DecodeString(parts[2])
	return j, err
}

// verify checks the signature with pub under the header's alg.
func (j *jws) verify(pub crypto.PublicKey) error {
	digest := sha256.Sum256([]byte(j.input))
	switch alg, _ := j.header["alg"].(string); alg {
	case "RS256":
		return rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, digest[:], j.sig)
	case "PS256":
		return rsa.VerifyPSS(pub.(*rsa.PublicKey), crypto.SHA256, digest[:], j.sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES256":
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || len(j.sig) != 64 {
			return errors.New("ES256 signature is not 64 bytes")
		}
		if !ecdsa.Verify(k, digest[:], new(big.Int).SetBytes(j.sig[:32]), new(big.Int).SetBytes(j.sig[32:])) {
			return errors.New("ES256 signature does not verify")
		}
		return nil
	default:
		return fmt.Errorf("alg %q", alg)
	}
}

func (j *jws) str(claim string) string { s, _ := j.claims[claim].(string); return s }
func (j *jws) num(claim string) int64  { f, _ := j.claims[claim].(float64); return int64(f) }

// publicFromJWK reads an RSA or P-256 public JWK.
func publicFromJWK(m map[string]any) (crypto.PublicKey, error) {
	get := func(k string) []byte {
		s, _ := m[k].(string)
		b, _ := base64.RawURLEncoding.DecodeString(s)
		return b
	}
	switch m["kty"] {
	case "EC":
		if m["crv"] != "P-256" || m["d"] != nil {
			return nil, errors.New("not a public P-256 JWK")
		}
		return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, get("x")...), get("y")...))
	case "RSA":
		if m["d"] != nil {
			return nil, errors.New("private JWK")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(get("n")), E: int(new(big.Int).SetBytes(get("e")).Int64())}, nil
	}
	return nil, errors.New("unknown kty")
}

// thumbprint is RFC 7638 computed the long way, for cross-checking.
func thumbprint(pub crypto.PublicKey) string {
	var m map[string]string
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		raw, _ := k.Bytes()
		m = map[string]string{"crv": "P-256", "kty": "EC", "x": base64.RawURLEncoding.EncodeToString(raw[1:33]), "y": base64.RawURLEncoding.EncodeToString(raw[33:])}
	case *rsa.PublicKey:
		m = map[string]string{"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()), "kty": "RSA", "n": base64.RawURLEncoding.EncodeToString(k.N.Bytes())}
	}
	b, _ := json.Marshal(m) // encoding/json sorts map keys, as RFC 7638 wants
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Test keys, made once: RSA key generation is slow.
var (
	testKeysOnce sync.Once
	rsaKey1      *rsa.PrivateKey
	rsaKey2      *rsa.PrivateKey
	ecKey1       *ecdsa.PrivateKey
	ecKey2       *ecdsa.PrivateKey
)

func testKeys() (*rsa.PrivateKey, *rsa.PrivateKey, *ecdsa.PrivateKey, *ecdsa.PrivateKey) {
	testKeysOnce.Do(func() {
		rsaKey1, _ = rsa.GenerateKey(rand.Reader, 2048)
		rsaKey2, _ = rsa.GenerateKey(rand.Reader, 2048)
		ecKey1, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ecKey2, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	})
	return rsaKey1, rsaKey2, ecKey1, ecKey2
}

// writeFile writes data to name in dir, atomically as a Kubernetes volume
// update does (a new file renamed over the old), and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, data, 0o600))
	require.NoError(t, os.Rename(tmp, path))
	return path
}

func pemKey(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// selfSigned returns a self-signed client certificate for k, in PEM, and
// the SHA-256 of its DER (the x5t#S256 of RFC 8705).
func selfSigned(t *testing.T, k *ecdsa.PrivateKey, cn string) (certPEM []byte, sum string) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	require.NoError(t, err)
	s := sha256.Sum256(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), hex.EncodeToString(s[:])
}

// credServer is a token endpoint that authenticates the client as a real
// server does: by secret (Basic or body), private_key_jwt against the
// public keys it knows, a ready-made assertion, or the TLS client
// certificate; and that checks DPoP proofs and binds tokens to their key.
// Its time is the test's fake clock.
type credServer struct {
	*httptest.Server
	now  func() time.Time
	hits atomic.Int64

	mu         sync.Mutex
	secrets    map[string]bool             // accepted client secrets
	keys       map[string]crypto.PublicKey // kid → accepted assertion key
	assertions map[string]bool             // accepted ready-made assertions
	certs      map[string]bool             // accepted client certificates, by SHA-256
	aud        string                      // the aud signed assertions must carry; "" = the token URL
	nonce      string                      // a DPoP nonce the token endpoint demands, if any
	bearerOnly bool                        // answer bearer even to a DPoP proof
	echo       bool                        // echo the client assertion in error descriptions
	jtis       map[string]bool
	expiresIn  int
	log        []credRequest
	bound      map[string]string // access token → jkt
}

// credRequest is what credServer saw of one request.
type credRequest struct {
	form      url.Values
	auth      string // how the client authenticated: "secret", "private_key_jwt", "assertion", "tls", or "" (refused)
	secret    string
	assertion *jws
	cert      string
	proof     *jws
	status    int
}

const tokenPath = "/oauth2/token"

func newCredServer(t *testing.T, useTLS bool) *credServer {
	t.Helper()
	s := &credServer{secrets: map[string]bool{}, keys: map[string]crypto.PublicKey{}, assertions: map[string]bool{},
		certs: map[string]bool{}, jtis: map[string]bool{}, bound: map[string]string{}, expiresIn: 3600, now: time.Now}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	if useTLS {
		// Like a server that also serves tls_client_auth: it names the
		// CAs it trusts, none of which issued the test's certificates.
		_, _, _, ec2 := testKeys()
		caPEM, _ := selfSigned(t, ec2, "some CA")
		cas := x509.NewCertPool()
		cas.AppendCertsFromPEM(caPEM)
		s.Server.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, ClientCAs: cas}
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

func (s *credServer) set(f func(s *credServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// requests returns a copy of what the server saw.
func (s *credServer) requests() []credRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]credRequest(nil), s.log...)
}

func (s *credServer) fail(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (s *credServer) serve(w http.ResponseWriter, r *http.Request) {
	n := s.hits.Add(1)
	if err := r.ParseForm(); err != nil {
		s.fail(w, 400, "invalid_request", err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := credRequest{form: r.PostForm}
	defer func() { s.log = append(s.log, seen) }()
	now := s.now()
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	tokenURL := scheme + "://" + r.Host + r.URL.EscapedPath()

	// DPoP (RFC 9449 §4.3).
	var jkt string
	if p := r.Header.Values("DPoP"); len(p) > 0 {
		proof, err := s.checkProof(p, http.MethodPost, tokenURL, "", now)
		seen.proof = proof
		if err != nil {
			seen.status = 400
			s.fail(w, 400, "invalid_dpop_proof", err.Error())
			return
		}
		if s.nonce != "" && proof.str("nonce") != s.nonce {
			seen.status = 400
			w.Header().Set("DPoP-Nonce", s.nonce)
			s.fail(w, 400, "use_dpop_nonce", "Authorization server requires nonce in DPoP proof")
			return
		}
		jwk, _ := proof.header["jwk"].(map[string]any)
		pub, _ := publicFromJWK(jwk)
		jkt = thumbprint(pub)
	}

	// Client authentication.
	form := r.PostForm
	if id := form.Get("client_id"); id != "" && id != testID {
		seen.status = 401
		s.fail(w, 401, "invalid_client", "unknown client")
		return
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
		seen.cert = hex.EncodeToString(sum[:])
	}
	switch {
	case form.Get("client_assertion_type") != "":
		a := form.Get("client_assertion")
		if form.Get("client_assertion_type") != assertionType {
			break
		}
		if s.assertions[a] {
			seen.auth = "assertion"
			break
		}
		j, err := parseJWS(a)
		if err != nil {
			break
		}
		seen.assertion = j
		kid, _ := j.header["kid"].(string)
		pub := s.keys[kid]
		if pub == nil { // as Ory Hydra answers an unknown kid
			seen.status = 400
			s.fail(w, 400, "invalid_request", fmt.Sprintf("The JSON Web Token uses signing key with kid '%s', which could not be found.", kid))
			return
		}
		aud := s.aud
		if aud == "" {
			aud = tokenURL
		}
		iat, exp := j.num("iat"), j.num("exp")
		if pub == nil || j.verify(pub) != nil || j.header["typ"] != "JWT" || j.str("iss") != testID || j.str("sub") != testID ||
			j.str("aud") != aud || j.str("jti") == "" || s.jtis[j.str("jti")] || exp-iat > 60 || exp <= now.Unix() || iat > now.Unix()+5 {
			break
		}
		s.jtis[j.str("jti")] = true
		seen.auth = "private_key_jwt"
	case seen.cert != "" && form.Get("client_secret") == "" && r.Header.Get("Authorization") == "":
		if s.certs[seen.cert] && form.Get("client_id") == testID {
			seen.auth = "tls"
		}
	default:
		id, secret, ok := r.BasicAuth()
		if ok {
			id, _ = url.QueryUnescape(id)
			secret, _ = url.QueryUnescape(secret)
		} else {
			id, secret = form.Get("client_id"), form.Get("client_secret")
		}
		seen.secret = secret
		if id == testID && s.secrets[secret] {
			seen.auth = "secret"
		}
	}
	if seen.auth == "" {
		seen.status = 401
		desc := "Client authentication failed"
		if s.echo {
			desc += ": " + form.Get("client_assertion")
		}
		s.fail(w, 401, "invalid_client", desc)
		return
	}
	seen.status = 200
	tok := fmt.Sprintf("tok-%d", n)
	typ := "bearer"
	if jkt != "" && !s.bearerOnly {
		typ = "DPoP"
		s.bound[tok] = jkt
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": typ, "expires_in": s.expiresIn})
}

// checkProof checks a DPoP proof for a request of method to htu carrying
// accessToken ("" for none), at now (RFC 9449 §4.3). Called under mu.
func (s *credServer) checkProof(values []string, method, htu, accessToken string, now time.Time) (*jws, error) {
	if len(values) != 1 {
		return nil, errors.New("exactly one DPoP header")
	}
	j, err := parseJWS(values[0])
	if err != nil {
		return nil, err
	}
	jwk, _ := j.header["jwk"].(map[string]any)
	pub, err := publicFromJWK(jwk)
	if err != nil {
		return j, err
	}
	if err := j.verify(pub); err != nil {
		return j, err
	}
	switch {
	case j.header["typ"] != "dpop+jwt":
		return j, errors.New("typ")
	case j.str("htm") != method:
		return j, fmt.Errorf("htm %q", j.str("htm"))
	case j.str("htu") != htu:
		return j, fmt.Errorf("htu %q, want %q", j.str("htu"), htu)
	case j.num("iat") < now.Add(-time.Minute).Unix() || j.num("iat") > now.Add(time.Minute).Unix():
		return j, errors.New("iat")
	case j.str("jti") == "" || s.jtis[j.str("jti")]:
		return j, errors.New("jti replayed")
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		if j.str("ath") != base64.RawURLEncoding.EncodeToString(sum[:]) {
			return j, errors.New("ath")
		}
	} else if _, ok := j.claims["ath"]; ok {
		return j, errors.New("ath on a token request")
	}
	s.jtis[j.str("jti")] = true
	return j, nil
}

// newCredClient returns a Client of s on a fake clock that s reads too.
func newCredClient(t *testing.T, s *credServer, mod func(*Config)) (*Client, *clock.Fake) {
	t.Helper()
	fc := clock.NewFake(epoch)
	s.set(func(s *credServer) { s.now = fc.Now })
	cfg := Config{TokenURL: s.URL + tokenPath, ClientID: testID}
	if s.Server.TLS != nil {
		cfg.HTTPClient = s.Client()
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := newClient(cfg, fc, noJitter)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c, fc
}
