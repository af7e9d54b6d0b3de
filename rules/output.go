package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
)

// Time is event time in epoch milliseconds. It is written to JSON as RFC 3339
// in UTC and read from RFC 3339 or integer epoch milliseconds.
type Time int64

// MarshalJSON writes t as an RFC 3339 string.
func (t Time) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, FormatTime(int64(t))), nil
}

// UnmarshalJSON reads RFC 3339 or integer epoch milliseconds, from 1970 to
// 9999 as an event's times.
func (t *Time) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] != '"' {
		n, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil || n < 0 || n > maxTime {
			return fmt.Errorf("time must be RFC 3339 or integer epoch milliseconds, got %s", b)
		}
		*t = Time(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	ms, ok := ParseTime(s)
	if !ok {
		return fmt.Errorf("time must be RFC 3339 or integer epoch milliseconds, got %q", s)
	}
	*t = Time(ms)
	return nil
}

// Input names the record that caused an output.
type Input struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// Decision is what a rule's emit writes (topic adrules.decisions).
type Decision struct {
	DecisionID     string         `json:"decision_id"`
	RuleID         string         `json:"rule_id"`
	RulesetVersion int64          `json:"ruleset_version"`
	RulesetSHA256  string         `json:"ruleset_sha256"`
	Type           string         `json:"type"`
	AccountID      string         `json:"account_id"`
	CampaignID     string         `json:"campaign_id,omitempty"`
	AdsetID        string         `json:"adset_id,omitempty"`
	AdID           string         `json:"ad_id"`
	VideoID        string         `json:"video_id,omitempty"`
	EventID        string         `json:"event_id"`
	TS             Time           `json:"ts"`
	Input          Input          `json:"input"`
	Values         map[string]any `json:"values,omitempty"`
	Explain        []string       `json:"explain"`
}

// Proposal is an action proposed to the guards of stage 2: by a rule's
// action, or from outside on the ad-actions topic.
type Proposal struct {
	ActionID       string   `json:"action_id"`
	TS             Time     `json:"ts"`
	AccountID      string   `json:"account_id"`
	CampaignID     string   `json:"campaign_id,omitempty"`
	AdsetID        string   `json:"adset_id,omitempty"`
	AdID           string   `json:"ad_id,omitempty"`
	Type           string   `json:"type"`
	OldBudget      *float64 `json:"old_budget,omitempty"`
	NewBudget      *float64 `json:"new_budget,omitempty"`
	Source         string   `json:"source"`
	RulesetVersion int64    `json:"ruleset_version,omitempty"`
	Input          *Input   `json:"input,omitempty"`
	// Order places the proposal in stage 2's judging order; it is set on
	// the proposals stage 2 reads and left out of verdicts.
	Order *Order `json:"order,omitempty"`
}

// RuleError is a rule that failed at run time for one event. It is counted
// and skipped; the engine never stops for it.
type RuleError struct {
	RuleID string
	AdID   string
	Err    string
}

// ID derives a deterministic identifier from its parts: the first 16 bytes of
// the SHA-256 of the parts, each followed by a zero byte, in hex.
func ID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}
