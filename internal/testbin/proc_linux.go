package testbin

import (
	"os/exec"
	"syscall"
)

// DieWithTest makes cmd's process get SIGKILL when the test binary that
// started it dies: a test binary killed by its -timeout (or by CI) would
// otherwise leave nats-server, ingest and projector processes running,
// loading the machine for the next tests.
func DieWithTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
