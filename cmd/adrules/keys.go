package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/adrules/adrules/versions"
)

// keyFlags are the flags of the signing key and the trust list.
type keyFlags struct {
	signingKey string
	trust      []string
	insecure   bool // a node's --insecure-accept-unsigned
	unsigned   bool // a publisher's --unsigned
}

// registerNode registers a node's flags: --signing-key, --trust and
// --insecure-accept-unsigned.
func (f *keyFlags) registerNode(fs *flag.FlagSet) {
	f.registerTrust(fs)
	fs.StringVar(&f.signingKey, "signing-key", "", "private key FILE that signs what this node publishes (its first version, PUT /api/config, shadow promotion); default $ADRULES_SIGNING_KEY")
	fs.BoolVar(&f.insecure, "insecure-accept-unsigned", false, "run every valid version, signed or not, and publish unsigned without a signing key (no --trust)")
}

// registerPublisher registers the flags of a command that publishes:
// --signing-key, --trust and --unsigned.
func (f *keyFlags) registerPublisher(fs *flag.FlagSet) {
	f.registerTrust(fs)
	fs.StringVar(&f.signingKey, "signing-key", "", "private key FILE that signs what is published (adrules keygen); default $ADRULES_SIGNING_KEY")
	fs.BoolVar(&f.unsigned, "unsigned", false, "publish without a signature, for nodes run with --insecure-accept-unsigned")
}

// registerTrust registers --trust alone, for a command that only reads.
func (f *keyFlags) registerTrust(fs *flag.FlagSet) {
	fs.Func("trust", "FILE of trusted publisher keys, one \"ed25519 BASE64 NAME\" a line (repeatable); default $ADRULES_TRUST (files separated by "+string(os.PathListSeparator)+")", func(s string) error {
		f.trust = append(f.trust, s)
		return nil
	})
}

// load reads the key files the flags, or else the environment, name.
func (f keyFlags) load(env map[string]string) (versions.Keys, error) {
	k := versions.Keys{PublishUnsigned: f.insecure || f.unsigned}
	path := f.signingKey
	if path == "" {
		path = env["ADRULES_SIGNING_KEY"]
	}
	if path != "" {
		s, err := loadSigner(path)
		if err != nil {
			return k, err
		}
		k.Signer = s
	}
	p, err := f.policy(env)
	k.Policy = p
	return k, err
}

// policy reads the trust list files the flags, or else the environment,
// name: which versions count, for a command that only reads.
func (f keyFlags) policy(env map[string]string) (versions.Policy, error) {
	p := versions.Policy{AcceptUnsigned: f.insecure}
	files := f.trust
	if len(files) == 0 && env["ADRULES_TRUST"] != "" {
		files = filepath.SplitList(env["ADRULES_TRUST"])
	}
	if len(files) > 0 {
		t, err := loadTrust(files...)
		if err != nil {
			return p, err
		}
		p.Trust = t
	}
	return p, nil
}

// loadSigner reads a private key file; a key without a Name header is
// named after the file.
func loadSigner(path string) (*versions.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	base := filepath.Base(path)
	s, err := versions.ParseSigner(b, strings.TrimSuffix(base, filepath.Ext(base)))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return s, nil
}

// loadTrust reads trust list files into one list.
func loadTrust(files ...string) (*versions.TrustList, error) {
	var keys []versions.PublicKey
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("trust list: %w", err)
		}
		ks, err := versions.ParseTrustList(b)
		if err != nil {
			return nil, fmt.Errorf("trust list %s: %w", f, err)
		}
		keys = append(keys, ks...)
	}
	t, err := versions.NewTrustList(keys...)
	if err != nil {
		return nil, fmt.Errorf("trust list %s: %w", strings.Join(files, ", "), err)
	}
	return t, nil
}

// writeKeyPair writes a new key pair: PREFIX.key (the private key, mode
// 0600, never over an existing file) and PREFIX.pub (its trust list line).
func writeKeyPair(prefix, name string) (*versions.Signer, error) {
	s, err := versions.GenerateKey(rand.Reader, name)
	if err != nil {
		return nil, err
	}
	if err := writeNew(prefix+".key", s.MarshalPEM(), 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(prefix+".pub", []byte(s.Public().String()+"\n"), 0o644); err != nil {
		return nil, err
	}
	return s, nil
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cmdKeygen makes a publisher's key pair.
func cmdKeygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "publisher", "write the private key to OUT.key (mode 0600) and the public key to OUT.pub; existing files are never overwritten")
	name := fs.String("name", "", "the key's name in trust lists and in config history (default: the base name of --out)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: adrules keygen [--out PREFIX] [--name NAME]\n\nMakes an ed25519 key pair that signs published rule set versions.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return exitError{2}
	}
	if *name == "" {
		*name = filepath.Base(*out)
	}
	s, err := writeKeyPair(*out, *name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s.key (the private key: keep it secret) and %s.pub (key %s, %s)\n", *out, *out, s.Public().ID(), s.Name())
	fmt.Fprintf(stdout, "trust it on every node: cat %s.pub >> trusted.keys; adrules run --trust trusted.keys ...\n", *out)
	fmt.Fprintf(stdout, "publish with it: adrules config publish --signing-key %s.key --brokers LIST rules.yaml\n", *out)
	return nil
}
