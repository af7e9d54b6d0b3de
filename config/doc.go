// Package config owns the rules file: its schema, its layering, its
// validation, and the canonical form and hash that version it.
//
// Load turns the bytes of a file into a Document, the effective rule set:
//
//  1. the file, in the new shape (DESIGN.md section 5) or the predecessor's
//     (winner_detection, rag_indexing, self_learning_cycle, model_evaluation
//     and safe_executor at the top level), with YAML anchors and merge keys;
//     the predecessor's sections are rewritten into the new shape, in the
//     file and in each overlay, so that an overlay of either shape applies
//     to a file of either;
//  2. the environments overlay named by Options.Environment, else
//     $ADRULES_ENV, else $ENVIRONMENT: mappings merge deep, scalars and
//     lists replace. Every overlay is checked, selected or not;
//  3. variables: ADRULES__A__B=v sets a.b (names matched without regard to
//     case, list items by index or rule id, values read as YAML scalars),
//     and the predecessor's names (WINNER_CTR_THRESHOLD, MAX_ACTIONS_PER_HOUR,
//     ...) set the keys they always set. The predecessor's parameter names
//     (WINNER_*, LEARNING_CYCLE_INTERVAL_SECONDS) are ignored by a file
//     without the section they set: they are leftovers of its deployment;
//  4. a file with winner_detection but no rules key gets WinnerRule;
//  5. a strict decode, Defaults and Validate.
//
// Canonical and SHA256 then give the document's identity: the value the
// config topic carries and every node compares.
//
// # Nothing but the bytes it is handed
//
// config does no I/O: Load reads the bytes and variables its caller passes
// (cmd builds Options.Vars from the process environment) and never calls
// os.Getenv, opens files or reads a clock. It keeps no caches and no
// package-level mutable state; a Document is a value that nothing here
// holds on to or changes after Load returns it. A running node takes its
// rule set from the config topic only; ParamOverrides names the variables
// it then ignores.
//
// # Every problem, where it is
//
// Load and Validate report all problems at once, in file order, as Errors
// of *Error with file, line and column, and the rule id for rule problems
// (Load the first MaxErrors of them, and a count of the rest).
// Once the file parses, Load reports the problems of overlays, variables,
// keys, types and validation together; validation leaves out only the
// values that could not be read. Unknown keys are errors everywhere, in
// every overlay, with the keys that are known. In the free-form maps
// (params, feature_flags), where any key is allowed, a variable or an
// overlay that names a key the file lacks is an error, so a typo never adds
// a parameter nobody reads; and under params it keeps the file's type (a
// whole number stays whole; a whole number given for a decimal becomes
// decimal). A problem a variable causes is reported at Pos{File: file,
// Var: "NAME"}, which prints as "file: $NAME". An expression's positions
// map back to the file through Rule.WhenPos, whatever YAML style held it,
// and any other value's through Document.PosOf.
//
// # A small file stays a small document
//
// Load refuses, before it builds anything from them, a file of more than
// MaxFileSize bytes, one that is more than MaxExpandedSize with its aliases
// and merge keys expanded (each key and value counting its text, its path
// and 16 bytes), nested more than MaxDepth deep, or with a key of more
// than MaxKeySize bytes; each at the place it passes the limit, or at the
// alias whose expansion does. It checks the effective document against
// the same limits, so Canonical and SHA256 only ever see a document within
// them, and Canonical's output always loads. Rule ids are at most
// MaxRuleIDSize bytes, and messages quote at most 64 bytes of a value.
//
// # One meaning, one hash
//
// Documents that mean the same get the same Canonical form and SHA256,
// whatever the file's formatting, comments, key order, units, quoting or
// shape, and whether defaults are written out or not: Defaults makes every
// switch explicit, and Canonical sorts map keys and windows and leaves out
// where the document came from (File, Environment, positions). Floats keep
// a decimal point, so 3.0 stays a float. Load of Canonical's output gives
// the same hash again.
//
// # Explicit zeros are kept
//
// Defaults fills only what is missing. A number written as 0 stays 0, so
// max_per_hour: 0 is an error rather than a quiet 15, and jitter min: 0s
// means no jitter floor.
package config
