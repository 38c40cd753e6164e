package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTable(t *testing.T) {
	in := `goos: linux
BenchmarkRoundTrip/bare-2   	400000000	         3.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkRoundTrip/m2m-2    	 3000000	       303.0 ns/op	     720 B/op	       3 allocs/op
BenchmarkRoundTrip/m2m-2    	 3000000	       313.0 ns/op	     720 B/op	       3 allocs/op
BenchmarkRoundTrip/m2m-2    	 3000000	       353.0 ns/op	     720 B/op	       3 allocs/op
BenchmarkRoundTrip/x-oauth2-2	 1000000	       903.0 ns/op	     936 B/op	       7 allocs/op
BenchmarkColdBurst/m2m-2     	       5	  78012477 ns/op	         1.000 token-reqs/op
BenchmarkColdBurst/x-oauth2-2	       5	  78526735 ns/op	         1.000 token-reqs/op
PASS
`
	var out bytes.Buffer
	require.NoError(t, run(strings.NewReader(in), &out))
	got := out.String()
	assert.Contains(t, got, "| m2m | 313.0 | 720.0 | 3.00 | 0.35× | 310.0 ns | 0.34× |")
	assert.Contains(t, got, "| bare | 3.00 | 0 | 0 | 0.00× | 0 ns | 0.00× |")
	assert.Contains(t, got, "token-reqs/op")
	assert.Contains(t, got, "| m2m | 78012477 | 0 | 0 | 1.00 | 0.99× |")
}
