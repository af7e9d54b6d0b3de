package streams

// StopsNode is stopsNode, for the tests.
var StopsNode = stopsNode

// DeadLetter and RecordBytes are deadLetter and recordBytes, for the tests.
var (
	DeadLetter  = deadLetter
	RecordBytes = recordBytes
)
