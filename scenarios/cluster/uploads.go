package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/statelab/shop/internal/proc"
	"github.com/statelab/shop/internal/testenv"
)

// Where a cluster's replicas keep review photos (Options.Uploads).
const (
	// UploadsDisk: each replica's own directory, its disk.
	UploadsDisk = "disk"
	// UploadsS3: one bucket of an object store (versitygw) they all use.
	UploadsS3 = "s3"
)

// Bucket is the bucket of an s3 cluster.
const Bucket = "shop-photos"

// startObjectStore starts versitygw for an s3 cluster.
func (c *Cluster) startObjectStore(ctx context.Context) error {
	if c.o.Uploads != UploadsS3 {
		return nil
	}
	s3, err := proc.StartObjectStore(ctx, filepath.Join(c.dir, "objects"), filepath.Join(c.dir, "versitygw.log"), c.out)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	c.s3 = s3
	return nil
}

// uploadsEnv is a replica's photo settings: its own directory, or the
// cluster's bucket.
func (c *Cluster) uploadsEnv(name string) []string {
	if c.s3 != nil {
		return c.s3.Env(Bucket)
	}
	return []string{"SHOP_UPLOADS=" + c.UploadsDir(name)}
}

// UploadsDir is the directory that stands for replica name's own disk
// with Options.Uploads disk.
func (c *Cluster) UploadsDir(name string) string { return filepath.Join(c.dir, name+"-uploads") }

// ObjectStore is the versitygw of an s3 cluster, for faults (Stop, Start,
// Pause), or nil.
func (c *Cluster) ObjectStore() *testenv.ObjectStore { return c.s3 }

// Uploads is where the replicas keep photos: UploadsDisk or UploadsS3.
func (c *Cluster) Uploads() string { return c.o.Uploads }

// ReplaceReplica is a replica's container replaced: kill -9, a new one
// with the same name, address and settings, and an empty disk (its
// uploads directory is removed). It returns once the new one is ready.
func (c *Cluster) ReplaceReplica(ctx context.Context, name string) error {
	r := c.Replica(name)
	if r == nil {
		return fmt.Errorf("cluster: replace %s: no such replica", name)
	}
	if err := r.Kill(); err != nil {
		return err
	}
	if err := os.RemoveAll(c.UploadsDir(name)); err != nil {
		return fmt.Errorf("cluster: replace %s: empty its disk: %w", name, err)
	}
	return r.Start(ctx)
}
