package engine

import (
	"bytes"
	"encoding/json"
)

// Encode is the one encoding of what the engine outputs, whichever sink
// writes it (a Kafka topic, a file of a backtest, a replay comparing
// bytes): decisions, proposals, verdicts, dead letters, switch points. It
// is v as JSON without escaping <, > and & (so explain traces read as
// written), with no trailing newline.
func Encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
