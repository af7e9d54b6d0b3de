// Command adrules is the adrules binary: it checks rule files, backtests
// them over event files, generates synthetic events and runs the demo. Run
// `adrules help`.
//
// # What it owns
//
// It is the only place that touches flags, the process environment, signals
// and os.Exit. It loads and layers rule files (config), compiles them
// (rules), opens Pebble (state) and wires them into the engine.
package main
