package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
)

// loadRules reads, layers, validates and compiles one rules file.
func loadRules(path, envName string, env map[string]string) (*rules.RuleSet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	doc, err := config.Load(path, data, config.Options{Environment: envName, Vars: env})
	if err != nil {
		return nil, err
	}
	return rules.Compile(doc, 0)
}

func cmdCheck(args []string, stdout, stderr io.Writer, env map[string]string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	envName := fs.String("env", "", "environments overlay to apply (default: $ADRULES_ENV, else $ENVIRONMENT)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: adrules check [--env NAME] FILE...\n\nExit status 0 when every file is valid; otherwise each problem is printed as FILE:LINE:COL: rule ID: message.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitError{2}
	}
	bad := 0
	for _, path := range fs.Args() {
		rs, err := loadRules(path, *envName, env)
		if err != nil {
			bad++
			var list config.Errors
			if errors.As(err, &list) {
				for _, e := range list {
					fmt.Fprintln(stderr, e)
				}
				continue
			}
			var one *config.Error
			if errors.As(err, &one) {
				fmt.Fprintln(stderr, one)
				continue
			}
			fmt.Fprintf(stderr, "%s: %v\n", path, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: ok: rule set %q, %d rules, windows %v, sha256 %s\n",
			path, rs.Name, len(rs.RuleIDs()), rs.Windows(), rs.SHA256[:12])
	}
	if bad > 0 {
		return exitError{1}
	}
	return nil
}
