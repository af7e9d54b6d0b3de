package versions

import (
	"fmt"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
)

// Compile validates and compiles a published version exactly as every node
// does: the document must load, hash to its sha256 and compile. It does
// not look at the signature (Policy.Accept does, first).
func Compile(c Record) (*rules.RuleSet, error) {
	name := fmt.Sprintf("%s v%d", c.Key(), c.Version)
	doc, err := config.Load(name, c.Document, config.Options{})
	if err != nil {
		return nil, err
	}
	if got := doc.SHA256(); got != c.SHA256 {
		return nil, fmt.Errorf("%s: the document hashes to %s, not to its sha256 %s", name, short(got), c.SHA256)
	}
	return rules.Compile(doc, c.Version)
}

// short returns the first 12 characters of a hash, for people.
func short(h string) string { return h[:min(12, len(h))] }

// Accept validates and compiles a published version, or says why it is
// refused. Policy.Accept is the one a node uses; Compile is one that does
// not check signatures.
type Accept func(Record) (*rules.RuleSet, error)

// Policy is which published versions a reader accepts: the ones signed by
// a key of Trust, or, with AcceptUnsigned (or without a trust list), every
// valid one. A node has one or the other, never both; a command without a
// trust list cannot tell which versions nodes accept, and checks none.
type Policy struct {
	// Trust lists the publishers whose versions count; nil: signatures
	// are not checked.
	Trust *TrustList
	// AcceptUnsigned takes every valid version, signed or not (a node's
	// --insecure-accept-unsigned).
	AcceptUnsigned bool
}

// Checks reports whether signatures are checked.
func (p Policy) Checks() bool { return p.Trust != nil && !p.AcceptUnsigned }

// Check verifies that c is signed by a trusted key, when signatures are
// checked, and returns that key (the zero key when they are not).
func (p Policy) Check(c Record) (PublicKey, error) {
	if !p.Checks() {
		return PublicKey{}, nil
	}
	return p.Trust.Verify(c.Signed(), c.Signature)
}

// Accept validates and compiles c as a node with this policy does: its
// signature first (an untrusted document is never compiled), then
// Compile.
func (p Policy) Accept(c Record) (*rules.RuleSet, error) {
	if _, err := p.Check(c); err != nil {
		return nil, err
	}
	return Compile(c)
}

// Next returns the number of the next version of a rule set, given its
// versions (live and shadow: they share one sequence) in the order they
// were published (Published). It counts every version when signatures are
// not checked. When they are, it counts the versions published before the
// first one a trusted key signed (those of the time before signatures, or
// of keys since rotated out), then only trusted ones: a writer without a
// key can neither use numbers up nor push them. A retirement counts for
// nothing. It never goes past MaxVersion (NextAfter).
func (p Policy) Next(published []Record) (int64, error) {
	var highest int64
	trusted := false
	for _, c := range published {
		if c.Retired {
			continue // a retirement names a version published before it
		}
		if p.Checks() {
			if _, err := p.Check(c); err == nil {
				trusted = true
			} else if trusted {
				continue
			}
		}
		highest = max(highest, c.Version)
	}
	return NextAfter(highest)
}
