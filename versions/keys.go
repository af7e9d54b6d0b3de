package versions

import (
	"errors"
	"fmt"
	"strings"
)

// Keys are whose versions a node (or a command that publishes) believes,
// and what it signs the versions it publishes with. The texts of its
// errors name the flags of adrules that set them.
type Keys struct {
	// Policy: Trust lists the publishers whose versions count. nil on a
	// node means AcceptUnsigned (Validate refuses anything else); nil on a
	// command that reads the config topics means unchecked.
	Policy
	// Signer signs what is published; nil: nothing is signed.
	Signer *Signer
	// PublishUnsigned: publishing without a signing key is meant (a node's
	// --insecure-accept-unsigned, a command's --unsigned).
	PublishUnsigned bool
}

// Sign signs c with the signer. Without one it leaves c unsigned when that
// is meant, and is an error otherwise: every node with a trust list would
// refuse the version.
func (k Keys) Sign(c *Record) error {
	if k.Signer == nil {
		if k.PublishUnsigned {
			return nil
		}
		return errors.New("no signing key: give --signing-key FILE (or $ADRULES_SIGNING_KEY); nodes refuse unsigned versions unless they run with --insecure-accept-unsigned (then publish with --unsigned)")
	}
	sig, err := k.Signer.Sign(c.Signed())
	if err != nil {
		return err
	}
	c.Signature = sig
	return nil
}

// Validate checks a node's keys at start: it must have a trust list or
// accept unsigned versions explicitly, never both, and a signing key it
// has must be one it trusts (the versions it publishes would be refused
// otherwise, by itself first).
func (k Keys) Validate() error {
	switch {
	case k.Trust != nil && k.AcceptUnsigned:
		return errors.New("--trust and --insecure-accept-unsigned contradict each other: give one")
	case k.Trust == nil && !k.AcceptUnsigned:
		return errors.New("no trust list: give --trust FILE (the publishers' public keys, adrules keygen makes them), or --insecure-accept-unsigned to run every valid version, signed or not")
	case k.Signer != nil && k.Trust != nil:
		if _, ok := k.Trust.Lookup(k.Signer.Public().ID()); !ok {
			return fmt.Errorf("--signing-key %s (key %s) is not in the trust list: the versions this node publishes would be refused", k.Signer.Name(), k.Signer.Public().ID())
		}
	}
	return nil
}

// SignedBy says who signed c, for people: the name the trust list gives
// the key when it verifies, what is wrong otherwise, or, without a trust
// list, what the record says, unverified.
func (k Keys) SignedBy(c Record) string {
	s := c.Signature
	switch {
	case s == nil:
		return "unsigned"
	case k.Trust == nil:
		return fmt.Sprintf("signer %s key %.16s (unverified: no --trust)", clipName(s.Signer), s.KeyID)
	}
	key, err := k.Trust.Verify(c.Signed(), s)
	switch {
	case err == nil:
		return fmt.Sprintf("signed by %s key %s", key.Name, key.ID())
	case errors.Is(err, ErrUntrusted):
		return fmt.Sprintf("NOT TRUSTED: key %.16s (says %s)", s.KeyID, clipName(s.Signer))
	default:
		return fmt.Sprintf("BAD SIGNATURE: key %.16s (%s)", s.KeyID, clipName(s.Signer))
	}
}

// clipName shortens a name a record gives, for printing.
func clipName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
