package streams

// StopsNode is stopsNode, for the tests.
var StopsNode = stopsNode
