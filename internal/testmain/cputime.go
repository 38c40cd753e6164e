package testmain

import (
	"syscall"
	"testing"
	"time"
)

// ReportCPU starts measuring the process's CPU time (user and system) and
// returns a function that reports it per op as "cpu-ns/op". On a machine
// shared with other work, wall time per op also counts the time the
// benchmark waited for a core; CPU time does not. Use it as
//
//	defer testmain.ReportCPU(b)()
//
// around the benchmark loop. Where the process's CPU time cannot be read,
// nothing is reported.
func ReportCPU(b *testing.B) func() {
	start, ok := cpuTime()
	return func() {
		if end, ok2 := cpuTime(); ok && ok2 && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

// cpuTime returns the CPU time the process has used.
func cpuTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
