//go:build linux

package testenv

// A small disk a test can fill: a tmpfs of its own, so that a write meets
// ENOSPC (SQLITE_FULL) exactly when the test says, without filling the
// machine's disk.

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// SmallDisk is a tmpfs mounted for one test.
type SmallDisk struct {
	tb  testing.TB
	dir string
}

// MountSmallDisk mounts a tmpfs of size bytes in a temporary directory and
// unmounts it when the test ends. Mounting needs root (CAP_SYS_ADMIN): the
// test skips without it, or fails when SHOP_TEST_REQUIRE=all.
func MountSmallDisk(tb testing.TB, size int64) *SmallDisk {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		Missing(tb, fmt.Sprintf("cannot mount a tmpfs for a full-disk test (%v); run the tests as root", err))
		return nil
	}
	tb.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			tb.Errorf("unmount %s: %v", dir, err)
		}
	})
	return &SmallDisk{tb: tb, dir: dir}
}

// Dir is where the disk is mounted.
func (d *SmallDisk) Dir() string { return d.dir }

// Free is how many bytes are left on the disk.
func (d *SmallDisk) Free() int64 {
	d.tb.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.dir, &st); err != nil {
		d.tb.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// LeaveFree fills the disk with a filler file until only free bytes are
// left (none for 0); it replaces the filler of an earlier call.
func (d *SmallDisk) LeaveFree(free int64) {
	d.tb.Helper()
	filler := filepath.Join(d.dir, "filler")
	if err := os.Remove(filler); err != nil && !os.IsNotExist(err) {
		d.tb.Fatal(err)
	}
	size := d.Free() - free
	if size <= 0 {
		return
	}
	f, err := os.Create(filler)
	if err != nil {
		d.tb.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		d.tb.Fatalf("fill the disk with %d bytes: %v", size, err)
	}
}
