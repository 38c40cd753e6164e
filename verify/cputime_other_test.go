//go:build !unix

package verify

import "time"

// cpuTime is unknown here; benchmarks then report no CPU time.
func cpuTime() time.Duration { return 0 }
