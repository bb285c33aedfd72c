//go:build !linux

package testenv

import "testing"

// SmallDisk is a tmpfs mounted for one test (Linux only).
type SmallDisk struct{}

// MountSmallDisk skips (or fails under SHOP_TEST_REQUIRE=all): tmpfs is Linux's.
func MountSmallDisk(tb testing.TB, size int64) *SmallDisk {
	tb.Helper()
	Missing(tb, "a full-disk test needs a tmpfs, which only Linux has")
	return nil
}

// Dir is where the disk is mounted.
func (d *SmallDisk) Dir() string { return "" }

// Free is how many bytes are left on the disk.
func (d *SmallDisk) Free() int64 { return 0 }

// LeaveFree fills the disk until only free bytes are left.
func (d *SmallDisk) LeaveFree(free int64) {}
