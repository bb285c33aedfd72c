package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUploadsDir: the goreman driver's replace empties the folder the
// running replica itself keeps photos in, read from its command line and
// environment as the shop reads them: the Procfile's SHOP_UPLOADS
// (RUN/shopN-uploads), a relative one against its working directory, the
// default beside the SQLite file, a flag winning over the environment, and
// nothing for photos in an object store.
func TestUploadsDir(t *testing.T) {
	if _, err := os.Stat("/proc/self/environ"); err != nil {
		t.Skip("no /proc here: the driver's replace needs it")
	}
	cwd := t.TempDir()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"the Procfile's", nil, []string{"SHOP_UPLOADS=/run/cluster/shop2-uploads"}, "/run/cluster/shop2-uploads"},
		{"relative", nil, []string{"SHOP_UPLOADS=.run/shop1-uploads"}, filepath.Join(cwd, ".run/shop1-uploads")},
		{"beside the database", nil, []string{"SHOP_DB=data/shop.db"}, filepath.Join(cwd, "data/uploads")},
		{"the shop's defaults", nil, nil, filepath.Join(cwd, "uploads")},
		{"a flag wins", []string{"-uploads", "/flag/dir"}, []string{"SHOP_UPLOADS=/env/dir"}, "/flag/dir"},
		{"a flag with =", []string{"--uploads=/flag/dir"}, nil, "/flag/dir"},
		{"an object store", nil, []string{"SHOP_UPLOADS=s3://shop-photos"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A stand-in replica: sh ignores the arguments after its
			// script, which show in its command line as the shop's
			// would; it loops rather than exec sleep, so that
			// they stay.
			cmd := exec.Command("/bin/sh", append([]string{"-c", "while :; do " + sleep + " 1; done", "shop"}, tt.args...)...)
			cmd.Dir, cmd.Env = cwd, append(tt.env, "STAND_IN=1")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			// Start returns while the kernel may still be laying out the
			// new program's environment: a replica has long been running.
			environ := fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid)
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				if b, _ := os.ReadFile(environ); strings.Contains(string(b), "STAND_IN=1") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the stand-in's environment is not in /proc after 5 s")
				}
			}
			got, err := uploadsDir(cmd.Process.Pid)
			if err != nil || got != tt.want {
				t.Errorf("uploadsDir = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
