package versions

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
)

// Version is what a signature covers: which version of which rule set
// names which document.
type Version struct {
	Name   string // the rule set's name
	Number int64  // the version number, in 1..MaxVersion
	SHA256 string // the sha256 of the effective document, in hex
	Shadow bool   // a shadow (challenger) version, not a live one
}

// messageHead is the first line of every signed message: it names the
// format, so that a later one cannot be mistaken for it.
const messageHead = "adrules signed rule set version 1\n"

// Message returns the bytes a publisher signs for v, and a node verifies:
//
//	adrules signed rule set version 1
//	name: NAME
//	version: NUMBER
//	sha256: SHA256
//	kind: live
//
// each line ending in "\n", NUMBER in decimal, the last line "kind: shadow"
// for a shadow. A field holding a line break, or a number outside
// 1..MaxVersion, is refused: the message says one thing only.
func (v Version) Message() ([]byte, error) {
	if strings.ContainsAny(v.Name, "\r\n") || strings.ContainsAny(v.SHA256, "\r\n") {
		return nil, errors.New("a rule set name or sha256 with a line break cannot be signed")
	}
	if err := CheckVersion(v.Number); err != nil {
		return nil, err
	}
	kind := "live"
	if v.Shadow {
		kind = "shadow"
	}
	var b bytes.Buffer
	b.WriteString(messageHead)
	fmt.Fprintf(&b, "name: %s\nversion: %d\nsha256: %s\nkind: %s\n", v.Name, v.Number, v.SHA256, kind)
	return b.Bytes(), nil
}

// Signature is a publisher's signature of a Version, carried by its config
// record.
type Signature struct {
	// KeyID is the ID of the signing key (PublicKey.ID): a node looks the
	// key up in its trust list by it.
	KeyID string `json:"key_id"`
	// Signer is the name the signing key was given where it was used. It
	// is what the publisher says; the name a reader should believe is the
	// one its trust list gives the key.
	Signer string `json:"signer,omitempty"`
	// Sig is the ed25519 signature of the Version's Message (base64 in
	// JSON).
	Sig []byte `json:"sig"`
}

// Errors of TrustList.Verify. They surface, wrapped with the key ID, the
// version and the reason, where a node refuses a version (its log, and
// adrules_config_refused_total) and in `adrules config history`.
var (
	// ErrUnsigned: the version carries no signature.
	ErrUnsigned = errors.New("unsigned")
	// ErrUntrusted: the version is signed by a key that is not in the
	// trust list.
	ErrUntrusted = errors.New("signed by a key that is not trusted")
	// ErrBadSignature: the signature does not verify under the trusted
	// key it names: the record was changed, or its signature was made for
	// another version (another number, document, rule set, or kind).
	ErrBadSignature = errors.New("bad signature")
)

// PublicKey is a publisher's public key and the name it goes by.
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey
}

// ID is the key's ID: the first 8 bytes of the sha256 of its public bytes,
// in hex (16 characters).
func (k PublicKey) ID() string {
	sum := sha256.Sum256(k.Key)
	return hex.EncodeToString(sum[:8])
}

// String returns the key as a line of a trust list: "ed25519 BASE64 NAME".
func (k PublicKey) String() string {
	return "ed25519 " + base64.StdEncoding.EncodeToString(k.Key) + " " + k.Name
}

// ParsePublicKey parses one line of a trust list: "ed25519 BASE64 NAME".
func ParsePublicKey(line string) (PublicKey, error) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ed25519" {
		return PublicKey{}, errors.New(`want "ed25519 BASE64 NAME"`)
	}
	b, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil || len(b) != ed25519.PublicKeySize {
		return PublicKey{}, fmt.Errorf("the key is not %d bytes of base64", ed25519.PublicKeySize)
	}
	if err := checkName(f[2]); err != nil {
		return PublicKey{}, err
	}
	return PublicKey{Name: f[2], Key: ed25519.PublicKey(b)}, nil
}

// maxName caps a key's name.
const maxName = 64

// checkName: a key's name is 1 to 64 printable characters without spaces:
// it is the last field of a trust list line.
func checkName(name string) error {
	if name == "" || len(name) > maxName {
		return fmt.Errorf("a key's name has 1 to %d characters, not %d", maxName, len(name))
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("a key's name %q holds a space or an unprintable character", name)
		}
	}
	return nil
}

// Signer signs versions with a publisher's private key.
type Signer struct {
	name string
	key  ed25519.PrivateKey
}

// NewSigner returns a signer of key, that goes by name.
func NewSigner(name string, key ed25519.PrivateKey) (*Signer, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("not an ed25519 private key")
	}
	return &Signer{name: name, key: key}, nil
}

// GenerateKey makes a new key pair with randomness from rand
// (crypto/rand.Reader, but for tests).
func GenerateKey(rand io.Reader, name string) (*Signer, error) {
	_, key, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	return NewSigner(name, key)
}

// pemName names a private key: a line of text before its PEM block
// ("Name: alice"), which PEM readers such as openssl skip, or a header of
// the block.
const pemName = "Name"

// ParseSigner reads a private key file: a PKCS#8 PEM block of an ed25519
// key. Its name is given by a "Name: NAME" line before the block (or a
// Name header of the block), else it is name.
func ParseSigner(data []byte, name string) (*Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New(`no "PRIVATE KEY" PEM block`)
	}
	if i := bytes.Index(data, []byte("-----BEGIN")); i > 0 {
		for _, line := range strings.Split(string(data[:i]), "\n") {
			if n, ok := strings.CutPrefix(strings.TrimSpace(line), pemName+":"); ok {
				name = strings.TrimSpace(n)
			}
		}
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	k, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an ed25519 key", key)
	}
	if n := block.Headers[pemName]; n != "" {
		name = n
	}
	return NewSigner(name, k)
}

// MarshalPEM returns the private key as a PKCS#8 PEM block after a line
// that names it ("Name: alice"): what ParseSigner reads, and what openssl
// reads too (it skips the line).
func (s *Signer) MarshalPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(s.key)
	if err != nil {
		panic(err) // an ed25519 key always marshals
	}
	return append([]byte(pemName+": "+s.name+"\n"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
}

// Name is the name the signer goes by.
func (s *Signer) Name() string { return s.name }

// Public returns the signer's public key, with its name.
func (s *Signer) Public() PublicKey {
	return PublicKey{Name: s.name, Key: s.key.Public().(ed25519.PublicKey)}
}

// Sign signs v.
func (s *Signer) Sign(v Version) (*Signature, error) {
	msg, err := v.Message()
	if err != nil {
		return nil, err
	}
	return &Signature{KeyID: s.Public().ID(), Signer: s.name, Sig: ed25519.Sign(s.key, msg)}, nil
}

// TrustList is the set of public keys whose versions a node accepts. It is
// immutable once made.
type TrustList struct {
	keys []PublicKey
	byID map[string]PublicKey
}

// NewTrustList returns the trust list of keys. A key listed twice under
// one name counts once; under two names it is an error, as is an empty
// list.
func NewTrustList(keys ...PublicKey) (*TrustList, error) {
	t := &TrustList{byID: map[string]PublicKey{}}
	for _, k := range keys {
		if len(k.Key) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key %q is not an ed25519 public key", k.Name)
		}
		if err := checkName(k.Name); err != nil {
			return nil, err
		}
		id := k.ID()
		if old, ok := t.byID[id]; ok {
			if old.Name != k.Name {
				return nil, fmt.Errorf("key %s is listed as %q and as %q", id, old.Name, k.Name)
			}
			continue
		}
		t.byID[id] = k
		t.keys = append(t.keys, k)
	}
	if len(t.keys) == 0 {
		return nil, errors.New("the trust list holds no key")
	}
	return t, nil
}

// ParseTrustList reads the lines of a trust list file: one public key a
// line ("ed25519 BASE64 NAME"), blank lines and lines starting with #
// skipped. An error names the line.
func ParseTrustList(data []byte) ([]PublicKey, error) {
	var keys []PublicKey
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := ParsePublicKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		keys = append(keys, k)
	}
	return keys, sc.Err()
}

// Keys returns the trusted keys, in the order they were listed.
func (t *TrustList) Keys() []PublicKey { return slices.Clone(t.keys) }

// Lookup returns the trusted key of id.
func (t *TrustList) Lookup(id string) (PublicKey, bool) {
	k, ok := t.byID[id]
	return k, ok
}

// Verify checks that sig is a signature of v by a trusted key, and returns
// that key. The errors wrap ErrUnsigned, ErrUntrusted or ErrBadSignature,
// or say why v cannot be signed at all (Version.Message).
func (t *TrustList) Verify(v Version, sig *Signature) (PublicKey, error) {
	if sig == nil {
		return PublicKey{}, ErrUnsigned
	}
	k, ok := t.byID[sig.KeyID]
	if !ok {
		return PublicKey{}, fmt.Errorf("%w: key %q (says it is %q)", ErrUntrusted, clip(sig.KeyID), clip(sig.Signer))
	}
	msg, err := v.Message()
	if err != nil {
		return PublicKey{}, err
	}
	if len(sig.Sig) != ed25519.SignatureSize || !ed25519.Verify(k.Key, msg, sig.Sig) {
		return PublicKey{}, fmt.Errorf("%w by key %s (%s): not a signature of %s", ErrBadSignature, k.ID(), k.Name, v)
	}
	return k, nil
}

// String describes v for people: "default v7 sha256 1a2b3c4d5e6f", with
// " (shadow)" for a shadow.
func (v Version) String() string {
	s := fmt.Sprintf("%s v%d sha256 %.12s", v.Name, v.Number, v.SHA256)
	if v.Shadow {
		s += " (shadow)"
	}
	return s
}

// clip shortens what a record says about its signer, for messages: a
// record is not trusted to be brief.
func clip(s string) string {
	if len(s) > maxName {
		return s[:maxName] + "..."
	}
	return s
}
