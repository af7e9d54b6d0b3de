// Package versions holds what the config log means, which every node and
// every command that reads the log must decide alike (DESIGN.md section
// 7): the record of a published version (Record, its JSON on the config
// and config history topics, decoded from their entries by Live, Shadows
// and Published), compiling a record as every node does (Compile),
// accepting one under a trust list (Policy), the live version in force
// (Newest, and Replaces for a node that follows the topic), the shadow in
// force (ShadowInForce, NextShadow, NeedsHistory), the next version number
// (Policy.Next), resolving a backtest's --baseline (Baseline), and the
// range of version numbers and the signatures of published versions.
//
// A node, `adrules config`, the shadow judge, the admin API and backtests
// all call these functions: none decides what runs on its own, so what a
// tool shows is what nodes run.
//
// # The version in force
//
// The live version of a rule set is the highest version accepted among the
// records of the history topic, then those of the config topic; among the
// records of one version the later wins; a refused record is never picked;
// a tombstone never removes the live version. The shadow in force is the
// fold of the config topic's shadow records (a newer accepted version
// replaces it, a retirement ends it), or the history's when the topic ends
// on a refused record.
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
// # What it never does
//
// The package is pure: no Kafka (streams reads the topics and hands their
// records over as Entry values), no I/O, no clock (a record's publish time
// is what it says); randomness only from the reader passed to GenerateKey.
// It imports only config, rules and the standard library.
package versions
