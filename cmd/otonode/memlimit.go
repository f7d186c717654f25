package main

import (
	"fmt"
	"os"
	"runtime/debug"
)

// defaultMemoryLimitMB is the soft limit of the Go heap of a process that
// analyses (otonode analyze, otonode worker, the bench's otonode path)
// when neither a flag nor GOMEMLIMIT sets one. Without a limit the Go
// garbage collector lets the heap grow to twice what is live before it
// collects: on a 512×512×400 series about 520 MB are live during the TTA
// passes (the int16 volume, the region of interest and the passes'
// buffers), so the heap reached 1.2 GB, and the process 1.4 GB with ONNX
// Runtime's own memory (about 150 MB, outside the Go heap). With the
// limit the collector runs earlier instead; what it marks is a few large
// pointer-free arrays, so that costs little. It is a soft limit: an
// analysis that needs more (a larger series) still gets it, with a
// collection at each large allocation.
const defaultMemoryLimitMB = 640

// setMemoryLimit applies a soft memory limit in MiB: mb > 0 sets it, mb < 0
// leaves the runtime's (none, or GOMEMLIMIT's), and 0 sets
// defaultMemoryLimitMB unless GOMEMLIMIT is set. It returns a line for
// the log ("" when nothing changed).
func setMemoryLimit(mb int) string {
	switch {
	case mb < 0:
		return ""
	case mb == 0 && os.Getenv("GOMEMLIMIT") != "":
		return ""
	case mb == 0:
		mb = defaultMemoryLimitMB
	}
	debug.SetMemoryLimit(int64(mb) << 20)
	return fmt.Sprintf("soft memory limit of the Go heap: %d MiB", mb)
}

// memoryLimitUsage is the help text of the memory-limit flags.
func memoryLimitUsage() string {
	return fmt.Sprintf("soft memory limit of the Go heap in MiB (runtime/debug.SetMemoryLimit); 0: GOMEMLIMIT if set, else %d; -1: none", defaultMemoryLimitMB)
}
