package main

import (
	"context"
	"errors"
	"io"
)

func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer, env map[string]string) error {
	return errors.New("replay: not yet")
}
