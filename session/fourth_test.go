package session_test

// A throwaway fourth store, registered here and nowhere else, to hold the
// registry to its claim: a new store is one file (its scs.Store and its
// Kind), one registration and its docs. The shared store suite
// (store_test.go) runs over every registered kind, this one included.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/statelab/shop/session"
)

func init() {
	session.Register(session.Kind{
		Name: "files",
		Traits: session.Traits{
			Place: session.InShared, Where: "a shared directory",
			ReplicaDeath: func(replica string) string {
				return fmt.Sprintf("The session is a file in a directory every replica shares; %s's death loses nothing.", replica)
			},
			RedisOutage: "Nothing happens to it: file sessions never touch Redis.",
			KeyChange:   "Nothing happens to it: no keys are involved.",
		},
		Open: func(d session.Deps) (session.Store, error) {
			dir, err := os.MkdirTemp("", "files-sessions-")
			if err != nil {
				return nil, err
			}
			return session.NewSCSStore("files", fileStore{dir}, d.Options), nil
		},
	})
}

// fileStore is an scs.Store of one file per session, its expiry the
// file's modification time.
type fileStore struct{ dir string }

func (f fileStore) path(token string) string { return filepath.Join(f.dir, token) }

func (f fileStore) Find(token string) ([]byte, bool, error) {
	info, err := os.Stat(f.path(token))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if !time.Now().Before(info.ModTime()) {
		return nil, false, nil
	}
	b, err := os.ReadFile(f.path(token))
	return b, err == nil, err
}

func (f fileStore) Commit(token string, b []byte, expiry time.Time) error {
	tmp := f.path(token) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Chtimes(tmp, expiry, expiry); err != nil {
		return err
	}
	return os.Rename(tmp, f.path(token))
}

func (f fileStore) Delete(token string) error {
	err := os.Remove(f.path(token))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func (f fileStore) Ping(context.Context) error {
	_, err := os.Stat(f.dir)
	return err
}

func (f fileStore) Close() error { return os.RemoveAll(f.dir) }

// TestFourthStore: the registered fourth store is one of the kinds, with
// what it declared; the shared suite (TestRoundTrip, TestRenew, TestLockOff,
// TestObserved) runs over it with every other kind.
func TestFourthStore(t *testing.T) {
	k, ok := session.Lookup("files")
	if !ok || session.CheckKind("files") != nil {
		t.Fatalf("the fourth store is not registered: %v", session.Kinds())
	}
	st, err := k.Open(session.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if tr := session.TraitsOf(st); tr.Place != session.InShared || tr.Locks || session.ReplicaDeathStory("files", "shop2") == "" {
		t.Errorf("the fourth store's traits: %+v", tr)
	}
	cookie := save(t, st, "shop1")
	s, err := st.Load(t.Context(), cookie, false)
	if err != nil || !s.Known() {
		t.Fatalf("load: %v, known %v", err, s != nil && s.Known())
	}
	if d := st.Describe(t.Context(), s, "shop1"); d.SizeBytes == 0 || d.ReplicaDeath == "" || d.RedisOutage == "" {
		t.Errorf("describe: %+v", d)
	}
}
