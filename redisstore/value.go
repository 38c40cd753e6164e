package redisstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/m2mauth/m2m"
)

// formatV1 is the first byte of every value: the layout below, AES-256-GCM.
//
//	value   = formatV1 | nonce (12 bytes) | AES-256-GCM(payload), with
//	          formatV1 | key ID as additional data
//	payload = obtained (Unix ns, int64 big-endian; 0 for none)
//	          | expiry (Unix ns, int64 big-endian)
//	          | uvarint length | access token
//	          | uvarint length | token type
//	          | uvarint length | scope
const formatV1 = 1

// aead returns the AES-256-GCM cipher of key for this Store's context.
func (s *Store) aead(key m2m.StoreKey) (cipher.AEAD, error) {
	k, err := key.DeriveKey(s.info, 32)
	if err != nil {
		return nil, err // a zero StoreKey; the message says so
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	return cipher.NewGCM(block)
}

// seal encodes and encrypts tok for the key whose ID is id.
func seal(aead cipher.AEAD, id string, tok *m2m.SharedToken) (string, error) {
	if tok.Expiry.IsZero() {
		return "", fmt.Errorf("redisstore: token without expiry")
	}
	var obtained int64
	if !tok.Obtained.IsZero() {
		obtained = tok.Obtained.UnixNano()
	}
	payload := binary.BigEndian.AppendUint64(nil, uint64(obtained))
	payload = binary.BigEndian.AppendUint64(payload, uint64(tok.Expiry.UnixNano()))
	for _, f := range []string{tok.AccessToken, tok.TokenType, tok.Scope} {
		payload = binary.AppendUvarint(payload, uint64(len(f)))
		payload = append(payload, f...)
	}
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(payload)+aead.Overhead())
	out[0] = formatV1
	rand.Read(out[1:])
	out = aead.Seal(out, out[1:], payload, additionalData(id))
	clear(payload)
	return string(out), nil
}

// open decrypts and decodes raw, the value of the key whose ID is id; ok
// is false when raw was not sealed by seal with the same cipher and id.
func open(aead cipher.AEAD, id, raw string) (tok *m2m.SharedToken, ok bool) {
	ns := aead.NonceSize()
	if len(raw) < 1+ns+aead.Overhead() || raw[0] != formatV1 {
		return nil, false
	}
	payload, err := aead.Open(nil, []byte(raw[1:1+ns]), []byte(raw[1+ns:]), additionalData(id))
	if err != nil || len(payload) < 16 {
		return nil, false
	}
	tok = &m2m.SharedToken{Expiry: time.Unix(0, int64(binary.BigEndian.Uint64(payload[8:])))}
	if obtained := int64(binary.BigEndian.Uint64(payload)); obtained != 0 {
		tok.Obtained = time.Unix(0, obtained)
	}
	rest := payload[16:]
	for _, f := range []*string{&tok.AccessToken, &tok.TokenType, &tok.Scope} {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, false
		}
		*f = string(rest[w : w+int(n)])
		rest = rest[w+int(n):]
	}
	if len(rest) != 0 || tok.AccessToken == "" {
		return nil, false
	}
	return tok, true
}

func additionalData(id string) []byte { return append([]byte{formatV1}, id...) }
