// Package shadow judges a shadow (challenger) rule set against the live
// (champion) one: how often they agree, how often each side's winner
// decisions held up, and whether the shadow has earned promotion.
//
// # What it owns
//
//   - Settings: the predecessor's model_evaluation criteria (min_samples,
//     min_improvement_pct, confidence_level, min_accuracy_delta,
//     auto_promote) and the outcome yardstick (winner_detection's
//     roas_threshold, ctr_threshold, require_both), read from the LIVE rule
//     set's params by FromDocument. Both sides are judged with the
//     champion's thresholds and criteria, so a challenger cannot win by
//     lowering its own bar.
//   - Tracker: fed metric events and both sides' decisions in any
//     interleaving; it resolves each winner decision once the watermark
//     (the largest event ts seen) passes its ts plus the horizon (24h), and
//     counts agreement per rule over (rule_id, ad_id).
//   - Report: per side decisions, resolved, held and precision; agreement;
//     the pooled one-sided two-proportion z-test; the relative and absolute
//     improvement; each promotion criterion met or not, in words.
//
// # Outcomes
//
// A winner decision of ad a at ts t held when a's deltas with ts in
// (t, t+horizon] give ROAS = revenue/spend at or above roas_threshold, or
// CTR = clicks/impressions above ctr_threshold ("and" with require_both).
// Ratios are 0 on a zero denominator (DESIGN S5). Money sums are rounded
// to millionths before dividing, so decimal amounts that add up to a round
// number compare as that number.
//
// # Promotion
//
// Promote is true when all of these hold: each side has at least
// min_samples resolved decisions; the shadow's precision is higher by at
// least min_improvement_pct percent relative to the live precision; it is
// higher by at least min_accuracy_delta in absolute terms (a share: 0.01 is
// one point); and the z-test is significant at confidence_level (p <=
// 1 - confidence_level). AutoPromote only says whether a node may act on
// it; acting is the command's business.
//
// # What it never does
//
// No I/O, no clock, no logging, no randomness, no goroutines and no
// package-level mutable state: time is event time only, and the same
// inputs give the same Report. Reading Kafka, publishing the promoted
// version and exporting metrics belong to cmd/adrules.
package shadow
