package conformance

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// dieWithTest has the kernel kill cmd when the test process dies (a
// timeout panic runs no cleanups), so no peer outlives a failed run.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// childProcesses returns the command lines of the live children of pid, by
// process id, read from /proc.
func childProcesses(pid int) map[int][]string {
	out := map[int][]string{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(pid) || f[0] == "Z" {
			continue
		}
		child, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		cl, err := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
		if err != nil {
			continue
		}
		out[child] = strings.Split(strings.TrimRight(string(cl), "\x00"), "\x00")
	}
	return out
}
