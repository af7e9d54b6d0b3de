package main

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

func cmdShadow(ctx context.Context, args []string, stdout, stderr io.Writer, env map[string]string) error {
	return errors.New("shadow: not yet")
}

// watchShadow judges the shadow rule set against the live one for as long
// as ctx lasts: agreement and precision gauges on reg, and auto_promote.
func watchShadow(ctx context.Context, nc nodeConfig, reg prometheus.Registerer, log *slog.Logger) {}
