// Package versions holds what the config log means that every node must
// decide alike (DESIGN.md section 7). For now it holds two of those
// concepts: the range of version numbers, and the signatures of published
// versions; the version in force, shadows and compiling a record move here
// later.
//
// # Version numbers
//
// A version number is in 1..MaxVersion (2^53-1, the largest integer every
// JSON reader holds exactly). A record outside that range is refused where
// it is decoded, and Next refuses to go past MaxVersion instead of
// wrapping.
//
// # Signatures
//
// A publisher signs each version with an ed25519 key; a node accepts a
// version only when its signature verifies under a key of the node's
// TrustList. What is signed is Version.Message: a fixed text of the rule
// set's name, the version number, the document's sha256 and whether the
// version is live or a shadow, so a signature cannot be replayed under
// another number, another rule set, another document, or as live when it
// was given to a shadow. The author and publish time of a record are not
// signed: they are what the publisher says, and who signed is the key.
//
// Keys: a private key is a PKCS#8 PEM block ("PRIVATE KEY", as
// `openssl genpkey -algorithm ed25519` writes it), after an optional line
// "Name: NAME" (which openssl skips); a public key is one line, "ed25519 BASE64 NAME", and a
// trust list is such lines (blank lines and lines starting with # are
// skipped). A key is known by its ID: the first 8 bytes of the sha256 of
// its 32 public bytes, in hex.
//
// # Invariants
//
// The package is pure: no I/O, no clock; randomness only from the reader
// passed to GenerateKey. It imports only the standard library.
package versions
