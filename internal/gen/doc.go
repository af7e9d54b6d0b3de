// Package gen writes seeded synthetic ad data that looks like a real ad
// account: metric events (DESIGN section 4, "Metric event") for `adrules gen`,
// demos, tests and benchmarks, and external action proposals (DESIGN section
// 4, "Action proposal") for the stage-2 guards.
//
// # What it owns
//
//   - The account model: accounts, campaigns, ad sets, ads and videos with a
//     fixed id scheme (act_1001, cmp_1001_01, as_1001_03, ad_1001_0007,
//     vid_1001_012), shared by [Events] and [Proposals] so that proposals
//     name ads that exist. Event ids are <ad_id>-<interval index>; action
//     ids are ext-<seed>-<position>.
//   - The metric model: per-ad daily budget, CPM (around $14), CTR
//     (log-normal around 1.2%, 2% of ads at 3.2-6%), conversion rate and
//     order value (ROAS log-normal around 1.0, 1.5% of ads at 3.3-5);
//     deltas that follow a daily pattern in the account's time zone; ads that
//     go live over the first 85% of the span (a fifth before it), a few that
//     stop, a few whose budget changes once. Conversions accrue per ad and
//     are reported as whole units, so lifetime ROAS tracks the ad's true
//     rate instead of the luck of the first conversions; with the defaults
//     about 5% of ads become winners under the default rule (S6).
//   - Account styles for times: UTC, UTC with milliseconds in created_at, or
//     the account's own offset (-08:00); all valid per S2.
//   - The noise model: malformed lines (one of the kinds of DESIGN S7),
//     duplicates re-sent verbatim a few intervals later (S1), and a mix of
//     RFC 3339 and epoch-millisecond times (S2).
//
// # Invariants
//
//   - Output is a pure function of the options: the same options give
//     byte-identical output. Randomness comes only from math/rand/v2 PCG
//     generators seeded from Options.Seed, one stream per ad and one per
//     concern, never from the global source.
//   - It never reads the wall clock: the default start is the fixed time
//     2026-11-01T00:00:00Z.
//   - It never ranges over a map to produce output.
//   - The good metric events depend only on Seed, Accounts, AdsPerAccount,
//     Start, Duration, Interval and EpochMsPct: switching on bad lines or
//     duplicates inserts lines around the same good events.
//   - Good lines carry every required field; counts are non-negative
//     integers, clicks <= impressions, conversions <= clicks, money has two
//     decimals.
//
// # Line layout
//
// Events are written interval by interval in event time; within an interval,
// account by account and ad by ad. The ts of an event is the end of its
// reporting interval, so the delta covers (ts-Interval, ts]. A malformed line
// is a corrupted copy of the good event that follows it (same event_id), so a
// consumer that marks an event id as seen before validating it will lose the
// good copy: that is deliberate, S7 says bad records change no state.
// A duplicate is an earlier good line of one of the six previous intervals,
// byte for byte.
//
// gen does no other I/O than writing to the given io.Writer.
package gen
