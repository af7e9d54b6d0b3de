package replay

// FirstDiffOf, Without and CompareInput are firstDiff, without and
// compareInput, for the tests.
var (
	FirstDiffOf  = firstDiff
	Without      = without
	CompareInput = compareInput
)
