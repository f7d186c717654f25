package conformance

import (
	"os/exec"
	"syscall"
)

// dieWithTest has the kernel kill cmd when the test process dies (a
// timeout panic runs no cleanups), so no peer outlives a failed run.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
