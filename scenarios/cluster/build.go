package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// builds remembers, per output directory, the binary this process built
// there, so that every test and scenario of a process shares one build. A
// slot's semaphore (capacity 1) lets one caller build while the others wait,
// each as long as its own context allows.
var builds = struct {
	mu    sync.Mutex
	slots map[string]*buildSlot
}{slots: make(map[string]*buildSlot)}

type buildSlot struct {
	sem  chan struct{}
	path string // set once a build succeeded
}

// BuildShop builds ./cmd/shop of the module around the working directory
// (found by walking up to go.mod) into dir/shop and returns the binary's
// path. A process builds each dir once; a failed build is tried again on the
// next call.
func BuildShop(ctx context.Context, dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("cluster: build shop: %w", err)
	}
	builds.mu.Lock()
	slot := builds.slots[dir]
	if slot == nil {
		slot = &buildSlot{sem: make(chan struct{}, 1)}
		builds.slots[dir] = slot
	}
	builds.mu.Unlock()

	select {
	case slot.sem <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("cluster: build shop: %w", context.Cause(ctx))
	}
	defer func() { <-slot.sem }()
	if slot.path != "" {
		return slot.path, nil
	}

	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cluster: build shop: %w", err)
	}
	bin := filepath.Join(dir, "shop")
	// Build beside it and rename over it: a folder reused by several
	// processes (the lab's cache) may have a cluster running the old
	// binary, which keeps its inode while the name moves to the new one.
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "./cmd/shop")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("cluster: go build ./cmd/shop in %s: %v\n%s", root, err, bytes.TrimSpace(out))
	}
	if err := os.Rename(tmp, bin); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("cluster: build shop: %w", err)
	}
	slot.path = bin
	return bin, nil
}

// moduleRoot walks up from the working directory to the directory holding
// go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("cluster: find module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cluster: find module root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// buildDirPrefix names the per-process build directories in the temp dir.
const buildDirPrefix = "statelab-shop-build-"

// defaultBuildDir is where Start and StartT build the shop binary when they
// are given none: one directory per process, so that concurrent test
// binaries never overwrite a binary another one runs. Nothing can remove it
// when the process ends (a test binary has no hook for that), so each
// process removes those of processes that are gone.
var defaultBuildDir = sync.OnceValues(func() (string, error) {
	sweepBuildDirs()
	dir, err := os.MkdirTemp("", buildDirPrefix+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		return "", fmt.Errorf("cluster: build dir: %w", err)
	}
	return dir, nil
})

// sweepBuildDirs removes the build directories of processes that no longer
// exist, once they are an hour old (a process in another PID namespace
// sharing the temp dir looks gone). Errors are ignored: a leftover costs disk
// space, nothing else.
func sweepBuildDirs() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), buildDirPrefix+"*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), buildDirPrefix)
		pidText, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		info, err := os.Stat(m)
		if err != nil || time.Since(info.ModTime()) < time.Hour {
			continue
		}
		// ESRCH: no such process. EPERM means it exists (another user's).
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(m)
		}
	}
}
