package proc

import (
	"os"
	"os/exec"
)

// LookBinary finds name on PATH, then in the sbin directories that a
// non-root PATH often lacks (Debian installs nginx and redis-server's
// sentinel helpers in /usr/sbin).
func LookBinary(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := dir + "/" + name
		if info, statErr := os.Stat(p); statErr == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", err
}
