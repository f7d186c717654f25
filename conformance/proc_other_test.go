//go:build !linux

package conformance

import "os/exec"

// dieWithTest does nothing where the kernel has no parent-death signal.
func dieWithTest(cmd *exec.Cmd) {}

// childProcesses finds nothing without /proc: the tests that kill a
// worker fail, as they must where they cannot run.
func childProcesses(pid int) map[int][]string { return nil }
