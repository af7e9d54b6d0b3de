// Package jsonl adapts JSON Lines files to the engine's ports: a Source that
// reads a file as if it were one partition of a topic, and a Sink that writes
// decisions, verdicts and dead letters as one JSON object a line.
//
// # Offsets
//
// The offset of a line is its index counted from 0, blank lines included, so
// a file reads like a one-partition topic and a dead letter names its line
// (offset 41 is line 42).
//
// # What it never does
//
// It holds no state between runs and reads no clock.
package jsonl
