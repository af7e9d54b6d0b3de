package main

import (
	"context"
	"errors"
	"io"
)

func cmdShadow(ctx context.Context, args []string, stdout, stderr io.Writer, env map[string]string) error {
	return errors.New("shadow: not yet")
}
