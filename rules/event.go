package rules

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"
)

// Event is one metric event: the delta of one ad for one reporting interval
// (DESIGN section 4). Times are epoch milliseconds; 0 means absent.
//
// The strings of an Event filled by a Decoder share the decoder's memory:
// they are valid until its next Decode. Whatever keeps one (AdState,
// Decision) clones it.
type Event struct {
	EventID    string
	TS         int64
	AccountID  string
	CampaignID string
	AdsetID    string
	AdID       string
	VideoID    string

	Impressions int64
	Clicks      int64
	Conversions int64
	Spend       float64
	Revenue     float64

	CreatedAt int64
	Budget    float64
	HasBudget bool
}

// Limits of what an event or a proposal may carry (docs/events.md). Past
// them the record is a dead letter with the reason.
const (
	// MaxCount is the largest count (impressions, clicks, conversions) of
	// one event. Ten million events at the limit still sum below int64's
	// limit, and sums saturate there rather than wrap.
	MaxCount = 1_000_000_000_000
	// MaxMoney is the largest amount of money (spend, revenue, budget, a
	// proposal's budgets) in any currency. Sums of such amounts, and budgets
	// a rule scales by a sane change_pct, stay finite.
	MaxMoney = 1e12
	// MaxIDLen is the longest id, in bytes.
	MaxIDLen = 256
)

var (
	maxCountText = strconv.FormatFloat(MaxCount, 'g', -1, 64)
	maxMoneyText = strconv.FormatFloat(MaxMoney, 'g', -1, 64)
)

// DecodeError says why a record is not a valid metric event. Its text is the
// reason written to the dead-letter output.
type DecodeError struct {
	Field  string // the offending field, "" when the record as a whole is bad
	Reason string
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Decoder turns JSON records into Events. It reuses its parser between calls,
// so a Decoder belongs to one goroutine.
type Decoder struct {
	p fastjson.Parser
}

// required marks which required fields a record carried.
const (
	hasEventID = 1 << iota
	hasTS
	hasAccount
	hasAd
	hasImpressions
	hasClicks
	hasSpend
	hasAll = hasEventID | hasTS | hasAccount | hasAd | hasImpressions | hasClicks | hasSpend
)

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

var requiredNames = [...]string{"event_id", "ts", "account_id", "ad_id", "impressions", "clicks", "spend"}

// Decode parses one record into ev, which it overwrites. Semantics S2 and S7
// of DESIGN section 5a: required fields present and non-empty, counts
// non-negative integers, money non-negative and finite, times RFC 3339 or
// integer epoch milliseconds. Unknown fields are ignored.
func (d *Decoder) Decode(data []byte, ev *Event) error {
	*ev = Event{}
	data = bytes.TrimPrefix(data, utf8BOM) // some exporters start files with one
	v, err := d.p.ParseBytes(data)
	if err != nil {
		return &DecodeError{Reason: "not JSON: " + err.Error()}
	}
	o, err := v.Object()
	if err != nil {
		return &DecodeError{Reason: "not a JSON object"}
	}
	var have int
	var bad error
	o.Visit(func(k []byte, v *fastjson.Value) {
		if bad != nil {
			return
		}
		switch string(k) {
		case "event_id":
			ev.EventID, bad = str(v, "event_id", true)
			have |= hasEventID
		case "ts":
			ev.TS, bad = timestamp(v, "ts")
			have |= hasTS
		case "account_id":
			ev.AccountID, bad = str(v, "account_id", true)
			have |= hasAccount
		case "ad_id":
			ev.AdID, bad = str(v, "ad_id", true)
			have |= hasAd
		case "campaign_id":
			ev.CampaignID, bad = str(v, "campaign_id", false)
		case "adset_id":
			ev.AdsetID, bad = str(v, "adset_id", false)
		case "video_id":
			ev.VideoID, bad = str(v, "video_id", false)
		case "impressions":
			ev.Impressions, bad = count(v, "impressions")
			have |= hasImpressions
		case "clicks":
			ev.Clicks, bad = count(v, "clicks")
			have |= hasClicks
		case "conversions":
			if v.Type() != fastjson.TypeNull {
				ev.Conversions, bad = count(v, "conversions")
			}
		case "spend":
			ev.Spend, bad = money(v, "spend")
			have |= hasSpend
		case "revenue":
			if v.Type() != fastjson.TypeNull {
				ev.Revenue, bad = money(v, "revenue")
			}
		case "created_at":
			if v.Type() != fastjson.TypeNull {
				ev.CreatedAt, bad = timestamp(v, "created_at")
			}
		case "budget":
			if v.Type() != fastjson.TypeNull {
				ev.Budget, bad = money(v, "budget")
				ev.HasBudget = bad == nil
			}
		}
	})
	if bad != nil {
		return bad
	}
	if have != hasAll {
		for i, name := range requiredNames {
			if have&(1<<i) == 0 {
				return &DecodeError{Field: name, Reason: "required field missing"}
			}
		}
	}
	return nil
}

func str(v *fastjson.Value, field string, required bool) (string, error) {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		if len(b) == 0 && required {
			return "", &DecodeError{Field: field, Reason: "required field empty"}
		}
		id := unsafe.String(unsafe.SliceData(b), len(b))
		if err := checkID(field, id); err != nil {
			return "", err
		}
		return id, nil
	case fastjson.TypeNull:
		if required {
			return "", &DecodeError{Field: field, Reason: "required field empty"}
		}
		return "", nil
	}
	return "", &DecodeError{Field: field, Reason: "must be a string, got " + v.Type().String()}
}

// checkID refuses an id longer than MaxIDLen bytes, or one that is not
// valid UTF-8, holds a control character or U+FFFD. U+FFFD is what
// encoders (encoding/json among them) put for invalid bytes and broken
// surrogates, so two ids that differ only there would print, and be keyed,
// alike.
func checkID(field, id string) error {
	if len(id) > MaxIDLen {
		return &DecodeError{Field: field, Reason: "must be at most " + strconv.Itoa(MaxIDLen) + " bytes, got " + strconv.Itoa(len(id))}
	}
	// Ids are mostly printable ASCII: try 8 bytes at a time, the last 8
	// overlapping the ones before, and look closer only when that fails.
	if n := len(id); n >= 8 {
		for i := 0; ; i = min(i+8, n-8) {
			b := id[i : i+8] // one bounds check; the compiler makes the rest one load
			w := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
				uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
			if !printable8(w) {
				break
			}
			if i == n-8 {
				return nil
			}
		}
	}
	for i := 0; i < len(id); {
		c := id[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, n := rune(c), 1
		if c >= utf8.RuneSelf {
			r, n = utf8.DecodeRuneInString(id[i:])
		}
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == utf8.RuneError {
			return &DecodeError{Field: field, Reason: fmt.Sprintf("must be valid UTF-8 without control characters or U+FFFD, got %+q", id)}
		}
		i += n
	}
	return nil
}

// printable8 reports whether the 8 bytes of w are all printable ASCII
// (0x20 to 0x7e), with the bit tricks of "Bit Twiddling Hacks" (haszero,
// hasless), which are exact once no byte has its high bit set.
func printable8(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	control := (w - 0x20*ones) &^ w & highs // a byte below 0x20
	x := w ^ 0x7f*ones
	del := (x - ones) &^ x & highs // a byte 0x7f
	return w&highs|control|del == 0
}

func count(v *fastjson.Value, field string) (int64, error) {
	if v.Type() != fastjson.TypeNumber {
		return 0, &DecodeError{Field: field, Reason: "count must be a number, got " + v.Type().String()}
	}
	n, err := v.Int64()
	if err != nil {
		// 1e3 and 1000.0 are integers written another way; 12.5 is not.
		f, ferr := v.Float64()
		switch {
		case ferr != nil || f != math.Trunc(f):
			return 0, &DecodeError{Field: field, Reason: "count must be an integer, got " + v.String()}
		case f < 0:
			n = -1
		case f > MaxCount:
			n = MaxCount + 1
		default:
			n = int64(f)
		}
	}
	if n < 0 {
		return 0, &DecodeError{Field: field, Reason: "count must not be negative, got " + v.String()}
	}
	if n > MaxCount {
		return 0, &DecodeError{Field: field, Reason: "count must be at most " + maxCountText + ", got " + v.String()}
	}
	return n, nil
}

func money(v *fastjson.Value, field string) (float64, error) {
	if v.Type() != fastjson.TypeNumber {
		return 0, &DecodeError{Field: field, Reason: "money must be a number, got " + v.Type().String()}
	}
	f, err := v.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, &DecodeError{Field: field, Reason: "money must be a finite number, got " + v.String()}
	}
	if f < 0 {
		return 0, &DecodeError{Field: field, Reason: "money must not be negative, got " + v.String()}
	}
	if f > MaxMoney {
		return 0, &DecodeError{Field: field, Reason: "money must be at most " + maxMoneyText + ", got " + v.String()}
	}
	return f, nil
}

// timestamp reads an RFC 3339 string or integer epoch milliseconds (as a JSON
// number or a string of digits).
func timestamp(v *fastjson.Value, field string) (int64, error) {
	switch v.Type() {
	case fastjson.TypeNumber:
		n, err := v.Int64()
		if err != nil || n < 0 || n > maxTime {
			return 0, &DecodeError{Field: field, Reason: "time must be RFC 3339 or integer epoch milliseconds, got " + v.String()}
		}
		return n, nil
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		if ms, ok := ParseTime(string(b)); ok {
			return ms, nil
		}
		return 0, &DecodeError{Field: field, Reason: fmt.Sprintf("time must be RFC 3339 or integer epoch milliseconds, got %q", b)}
	}
	return 0, &DecodeError{Field: field, Reason: "time must be RFC 3339 or integer epoch milliseconds, got " + v.Type().String()}
}

// ParseTime parses an RFC 3339 time (Z or an offset, fractional seconds
// allowed) or a string of digits holding epoch milliseconds, into epoch
// milliseconds.
func ParseTime(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	if s[0] >= '0' && s[0] <= '9' && len(s) <= 16 {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, n <= maxTime
		}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.UnixMilli() < 0 {
		return 0, false
	}
	return t.UnixMilli(), true
}

// maxTime is 9999-12-31T23:59:59.999Z, the last time RFC 3339 can write. A
// larger epoch number is a unit mistake (microseconds, nanoseconds), and
// applied it would make every later event of the ad look late.
const maxTime = 253402300799999

// FormatTime writes epoch milliseconds as RFC 3339 in UTC, with milliseconds
// only when they are not zero.
func FormatTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}
