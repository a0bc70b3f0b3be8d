//go:build unix

package verify

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) the test process has used. Benchmarks
// report it per operation next to ns/op: on a shared machine wall time includes the
// time other processes held the CPU, CPU time does not.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
