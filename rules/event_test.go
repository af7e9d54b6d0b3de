package rules_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/adrules/adrules/rules"
)

const okEvent = `"ts":1793613600000,"impressions":10,"clicks":1,"spend":1.5`

// TestDecodeLimits (rows 6, 11, 12): ids are valid UTF-8 of at most 256
// bytes, counts and money at most 1e12; past that the record is a dead
// letter with a reason.
func TestDecodeLimits(t *testing.T) {
	ids := `"event_id":"e","account_id":"a","ad_id":"x"`
	long := strings.Repeat("i", 256)
	for _, tc := range []struct {
		name, rec string
		want      string // "" decodes
	}{
		{"budget 1.7e308", `{` + ids + `,` + okEvent + `,"budget":1.7e308}`, "budget: money must be at most 1e+12, got 1.7e308"},
		{"spend 1e13", `{` + ids + `,"ts":1,"impressions":1,"clicks":0,"spend":1e13}`, "spend: money must be at most 1e+12, got 1e13"},
		{"revenue 1e12+1", `{` + ids + `,` + okEvent + `,"revenue":1000000000001}`, "revenue: money must be at most 1e+12"},
		{"money 1e12", `{` + ids + `,"ts":1,"impressions":1,"clicks":0,"spend":1e12,"revenue":1000000000000,"budget":1e12}`, ""},
		{"impressions max int64", `{` + ids + `,"ts":1,"impressions":9223372036854775807,"clicks":0,"spend":0}`, "impressions: count must be at most 1e+12, got 9223372036854775807"},
		{"clicks 1e12+1", `{` + ids + `,"ts":1,"impressions":1,"clicks":1000000000001,"spend":0}`, "clicks: count must be at most 1e+12"},
		{"conversions 1e19", `{` + ids + `,` + okEvent + `,"conversions":1e19}`, "conversions: count must be at most 1e+12, got 1e19"},
		{"counts 1e12", `{` + ids + `,"ts":1,"impressions":1e12,"clicks":1000000000000,"conversions":1e12,"spend":0}`, ""},
		{"invalid UTF-8 ad_id", `{"event_id":"e","account_id":"a","ad_id":"x` + "\xff" + `",` + okEvent + `}`, "ad_id: must be valid UTF-8"},
		{"invalid UTF-8 event_id", `{"event_id":"` + "\xc3" + `","account_id":"a","ad_id":"x",` + okEvent + `}`, "event_id: must be valid UTF-8"},
		{"invalid UTF-8 account_id", `{"event_id":"e","account_id":"` + "a\xed\xa0\x80" + `","ad_id":"x",` + okEvent + `}`, "account_id: must be valid UTF-8"},
		{"invalid UTF-8 campaign_id", `{` + ids + `,` + okEvent + `,"campaign_id":"` + "\x80" + `"}`, "campaign_id: must be valid UTF-8"},
		{"invalid UTF-8 adset_id", `{` + ids + `,` + okEvent + `,"adset_id":"` + "\xfe" + `"}`, "adset_id: must be valid UTF-8"},
		{"invalid UTF-8 video_id", `{` + ids + `,` + okEvent + `,"video_id":"` + "v\xff" + `"}`, "video_id: must be valid UTF-8"},
		{"a broken surrogate pair", `{"event_id":"e","account_id":"a","ad_id":"x\ud800\u0041",` + okEvent + `}`, "ad_id: must be valid UTF-8"},
		{"U+FFFD", `{"event_id":"e","account_id":"a","ad_id":"x\ufffd",` + okEvent + `}`, "ad_id: must be valid UTF-8"},
		{"a control character", `{"event_id":"e","account_id":"a","ad_id":"x\u0000y",` + okEvent + `}`, "ad_id: must be valid UTF-8"},
		{"UTF-8 ids", `{"event_id":"é","account_id":"日本","ad_id":"x\u00e9",` + okEvent + `}`, ""},
		{"id of 256 bytes", `{"event_id":"` + long + `","account_id":"a","ad_id":"x",` + okEvent + `}`, ""},
		{"id of 257 bytes", `{"event_id":"e","account_id":"a","ad_id":"` + long + `x",` + okEvent + `}`, "ad_id: must be at most 256 bytes, got 257"},
		{"video_id of 257 bytes", `{` + ids + `,` + okEvent + `,"video_id":"` + long + `x"}`, "video_id: must be at most 256 bytes, got 257"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d rules.Decoder
			var ev rules.Event
			err := d.Decode([]byte(tc.rec), &ev)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var de *rules.DecodeError
			if err == nil || !errors.As(err, &de) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a decode error %q", err, tc.want)
			}
		})
	}
}

// TestLifetimeSumsSaturate (row 12): two events of 9223372036854775807
// impressions summed to -2 and a ctr of -4.6e18. Decoding refuses such
// counts now; sums of counts that get past it (state written before, or
// events made in code) saturate at the largest int64 instead of wrapping.
func TestLifetimeSumsSaturate(t *testing.T) {
	var d rules.Decoder
	var ev rules.Event
	rec := `{"event_id":"e1","ts":1,"account_id":"a","ad_id":"x","impressions":9223372036854775807,"clicks":9223372036854775807,"spend":1}`
	if err := d.Decode([]byte(rec), &ev); err == nil {
		t.Fatal("impressions 9223372036854775807 decoded")
	}
	rs, err := rules.Compile(docWith("r", "ad.impressions > 0 && ad.ctr >= 0 && w1h.impressions > 0", "impressions", "ctr", "w1h.impressions"), 1)
	if err != nil {
		t.Fatal(err)
	}
	var st rules.AdState
	e := rs.NewEvaluator()
	for _, id := range []string{"e1", "e2"} {
		ev := rules.Event{EventID: id, TS: 60_000, AccountID: "a", AdID: "x", Impressions: math.MaxInt64, Clicks: math.MaxInt64, Conversions: math.MaxInt64}
		st.Apply(&ev, rules.IDHash(id), rs.KeepMS(), rs.HorizonMS())
		var res rules.Result
		e.Eval(&st, &ev, rules.Input{}, &res)
		if len(res.Decisions) != 1 {
			t.Fatalf("%s: decisions %+v errors %+v: want the rule to fire on saturated sums", id, res.Decisions, res.Errors)
		}
		if v := res.Decisions[0].Values; v["impressions"] != math.MaxInt || v["ctr"] != 1.0 || v["w1h.impressions"] != math.MaxInt {
			t.Fatalf("%s: values %v", id, v)
		}
	}
	if l := st.Life; l.Impressions != math.MaxInt64 || l.Clicks != math.MaxInt64 || l.Conversions != math.MaxInt64 {
		t.Fatalf("lifetime %+v, want every count saturated", l)
	}
}
