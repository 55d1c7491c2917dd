package testkube

import "syscall"

// sysProcAttr has the kernel kill the child when the test process dies, so that a test
// binary killed on a timeout leaves no apiserver or etcd behind. Pdeathsig fires when the
// forking thread ends: startProc forks from a locked thread that outlives the child.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
