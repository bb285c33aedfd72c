package testenv

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/statelab/shop/internal/proc"
)

// ObjectStore is a versitygw (an S3 object store) that a test started on a
// free loopback port over a directory of its own: Stop and Start keep the
// objects, Pause stalls it.
type ObjectStore = proc.ObjectStore

// The root credentials of every ObjectStore: test values, never secrets.
const (
	ObjectStoreAccessKey = proc.ObjectStoreAccessKey
	ObjectStoreSecretKey = proc.ObjectStoreSecretKey
)

// LookVersitygw finds versitygw on PATH or where go install puts it.
func LookVersitygw() (string, error) { return proc.LookVersitygw() }

// StartObjectStore starts a versitygw for the test and stops it when the
// test ends. It skips (or fails under SHOP_TEST_REQUIRE=all) naming the
// install command when versitygw is missing; on a failed test it logs the
// end of the store's log.
func StartObjectStore(tb testing.TB) *ObjectStore {
	tb.Helper()
	if _, err := proc.LookVersitygw(); err != nil {
		Missing(tb, err.Error())
		return nil
	}
	dir := tb.TempDir()
	ctx, cancel := context.WithTimeout(tb.Context(), time.Minute)
	defer cancel()
	s, err := proc.StartObjectStore(ctx, filepath.Join(dir, "data"), filepath.Join(dir, "versitygw.log"), nil)
	if err != nil {
		tb.Fatalf("start versitygw: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Log(proc.FormatTail(s.LogPath()))
		}
		if err := s.Close(); err != nil {
			tb.Errorf("stop versitygw: %v", err)
		}
	})
	return s
}
