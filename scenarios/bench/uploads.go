package bench

// Review photos: what a photo costs the replica that takes it, on its own
// disk (-uploads DIR: a file, fsynced) and in an object store (-uploads
// s3://BUCKET: one pooled part buffer, one PUT to versitygw on the same
// machine), and what serving it back costs; and the replica's memory while
// 20 photos of 5 MiB arrive at once, the bound the part buffers promise.

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statelab/shop/scenarios/cluster"
)

// uploadKinds are measured in this order: disk, the stateful baseline, then s3.
var uploadKinds = []string{cluster.UploadsDisk, cluster.UploadsS3}

const (
	// photoBytes is the measured photo: a 200 KB PNG.
	photoBytes = 200 << 10
	// bigPhotoBytes and bigPhotos are the memory test: 20 photos of (just
	// under, with the form) 5 MiB at once.
	bigPhotoBytes = 5<<20 - 4<<10
	bigPhotos     = 20
	// goalUploadRSS: 20 uploads of 5 MiB at once may grow the replica's
	// RSS by at most 128 MiB (issue 23: at most one part buffer per upload
	// in flight).
	goalUploadRSS = 128 << 20
	// uploadBudget caps the photos each cluster keeps, 200 MB of disk.
	uploadBudget = 1000
)

// UploadsMeasurement is one -uploads kind on one replica, reached directly.
type UploadsMeasurement struct {
	Uploads string // disk or s3
	Workers int
	// Upload: POST /products/{slug}/reviews with a 200 KB photo, closed
	// model (median round's rate, latencies over every round).
	UploadRate           float64
	UploadP50, UploadP99 time.Duration
	// Serve: GET /uploads/{key} of one 200 KB photo, the same model.
	ServeRate          float64
	ServeP50, ServeP99 time.Duration
	// FreshRSS is the replica's VmRSS before its first upload; IdleRSS
	// before the 20 big uploads (after the 200 KB rounds: what the part
	// buffers' pool kept is in it), PeakRSS the most sampled (every 5 ms)
	// while they ran; BigTook how long they took together. The goal
	// counts from FreshRSS.
	FreshRSS, IdleRSS, PeakRSS uint64
	BigTook                    time.Duration
	Success                    float64 // requests answered as wanted, over all
	Errors                     []string
}

// photoForm is a review's multipart body with a PNG padded to n bytes.
func photoForm(n int) (body []byte, contentType string) {
	var img bytes.Buffer
	png.Encode(&img, image.NewGray(image.Rect(0, 0, 64, 64)))
	if img.Len() < n {
		img.Write(make([]byte, n-img.Len())) // after IEND: still the PNG it was
	}
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	w.WriteField("rating", "5")
	w.WriteField("body", "A photo for the bench.")
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="photo"; filename="bench.png"`)
	h.Set("Content-Type", "image/png")
	part, _ := w.CreatePart(h)
	part.Write(img.Bytes())
	w.Close()
	return b.Bytes(), w.FormDataContentType()
}

// loadRun is a closed-model measurement across rounds.
type loadRun struct {
	mu       sync.Mutex
	took     []time.Duration
	rates    []float64
	attempts int
	ok       int
	errors   []string
}

// round runs workers clients back to back for d (or until budget
// requests succeeded), each sending do's request; do reports success.
func (r *loadRun) round(ctx context.Context, workers int, d time.Duration, budget int64, do func(context.Context) error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var done atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil && (budget <= 0 || done.Load() < budget) {
				t0 := time.Now()
				err := do(ctx)
				if ctx.Err() != nil && err != nil {
					return // cut by the round's end: not the shop's failure
				}
				r.mu.Lock()
				r.attempts++
				if err != nil {
					r.errors = append(r.errors, err.Error())
				} else {
					r.ok++
					r.took = append(r.took, time.Since(t0))
					done.Add(1)
				}
				r.mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.mu.Lock()
	r.rates = append(r.rates, float64(done.Load())/time.Since(start).Seconds())
	r.mu.Unlock()
}

// summary is the median round's rate and the p50/p99 of every request.
func (r *loadRun) summary() (rate float64, p50, p99 time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.rates) > 0 {
		rates := slices.Clone(r.rates)
		slices.Sort(rates)
		rate = rates[len(rates)/2]
	}
	if n := len(r.took); n > 0 {
		took := slices.Clone(r.took)
		slices.Sort(took)
		p50, p99 = took[n/2], took[n*99/100]
	}
	return rate, p50, p99
}

var photoKeyRE = regexp.MustCompile(`/uploads/([a-z2-7]{26}\.png)`)

// uploadsBench measures both kinds, one replica each, reached directly
// (a disk photo is served only by the replica that took it: through
// nginx's round robin most reads would be 404s), taking turns round by
// round.
func uploadsBench(ctx context.Context, o Options, bin, dir string, logf func(string, ...any)) ([]UploadsMeasurement, error) {
	clusters, err := startClusters(ctx, uploadKinds, func(kind string) (cluster.Options, string) {
		return cluster.Options{Replicas: 1, Store: "memory", Binary: bin, Uploads: kind,
			Dir: filepath.Join(dir, "uploads-"+kind), Env: []string{"SHOP_LOG_LEVEL=warn"}}, kind + " uploads"
	})
	if err != nil {
		return nil, err
	}
	defer clusters.Close()
	slug, err := productSlug(ctx, clusters[uploadKinds[0]].URL())
	if err != nil {
		return nil, err
	}
	fresh := map[string]uint64{}
	for _, kind := range uploadKinds {
		fresh[kind] = rss(clusters[kind].Replicas()[0].Pid())
	}
	body, ct := photoForm(photoBytes)
	client := &http.Client{
		Transport:     &http.Transport{MaxIdleConnsPerHost: 256},
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	post := func(base string, body []byte, ct string) func(context.Context) error {
		return func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/products/"+slug+"/reviews", bytes.NewReader(body))
			req.Header.Set("Content-Type", ct)
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther {
				return fmt.Errorf("POST review: %s", resp.Status)
			}
			return nil
		}
	}

	round := o.Duration / time.Duration(o.Rounds)
	uploads := map[string]*loadRun{}
	serves := map[string]*loadRun{}
	for _, kind := range uploadKinds {
		uploads[kind], serves[kind] = &loadRun{}, &loadRun{}
	}
	for range o.Rounds {
		for _, kind := range uploadKinds {
			uploads[kind].round(ctx, o.Workers, round, uploadBudget/int64(o.Rounds), post(clusters[kind].Replicas()[0].URL(), body, ct))
		}
	}
	keys := map[string]string{}
	for _, kind := range uploadKinds {
		base := clusters[kind].Replicas()[0].URL()
		page, err := getBody(ctx, client, base+"/products/"+slug)
		if err != nil {
			return nil, err
		}
		m := photoKeyRE.FindStringSubmatch(page)
		if m == nil {
			return nil, fmt.Errorf("bench: no photo on the %s replica's product page", kind)
		}
		keys[kind] = m[1]
	}
	for range o.Rounds {
		for _, kind := range uploadKinds {
			u := clusters[kind].Replicas()[0].URL() + "/uploads/" + keys[kind]
			serves[kind].round(ctx, o.Workers, round, 0, func(ctx context.Context) error {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || n < photoBytes {
					return fmt.Errorf("GET photo: %s, %d bytes", resp.Status, n)
				}
				return nil
			})
		}
	}

	var out []UploadsMeasurement
	bigBody, bigCT := photoForm(bigPhotoBytes)
	for _, kind := range uploadKinds {
		rep := clusters[kind].Replicas()[0]
		m := UploadsMeasurement{Uploads: kind, Workers: o.Workers, FreshRSS: fresh[kind]}
		m.UploadRate, m.UploadP50, m.UploadP99 = uploads[kind].summary()
		m.ServeRate, m.ServeP50, m.ServeP99 = serves[kind].summary()
		m.IdleRSS, m.PeakRSS, m.BigTook, err = bigUploads(ctx, rep, post(rep.URL(), bigBody, bigCT))
		attempts, ok := uploads[kind].attempts+serves[kind].attempts+bigPhotos, uploads[kind].ok+serves[kind].ok+bigPhotos
		if err != nil {
			ok--
			m.Errors = append(m.Errors, err.Error())
		}
		m.Errors = append(m.Errors, compact(append(uploads[kind].errors, serves[kind].errors...))...)
		if attempts > 0 {
			m.Success = float64(ok) / float64(attempts)
		}
		logf("bench: uploads %-4s upload %4.0f/s p50 %v p99 %v  serve %5.0f/s p50 %v p99 %v  RSS %d MiB fresh, %d after the 200 KB rounds, %d with %d×5 MiB at once (%v)",
			kind, m.UploadRate, m.UploadP50, m.UploadP99, m.ServeRate, m.ServeP50, m.ServeP99,
			m.FreshRSS>>20, m.IdleRSS>>20, m.PeakRSS>>20, bigPhotos, m.BigTook.Round(time.Millisecond))
		out = append(out, m)
	}
	return out, nil
}

// bigUploads sends bigPhotos uploads at once to one replica and samples
// its RSS every 5 ms meanwhile.
func bigUploads(ctx context.Context, rep *cluster.Replica, do func(context.Context) error) (idle, peak uint64, took time.Duration, err error) {
	time.Sleep(500 * time.Millisecond) // let the last round's garbage settle
	idle = rss(rep.Pid())
	peak = idle
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if r := rss(rep.Pid()); r > peak {
				peak = r
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	errs := make([]error, bigPhotos)
	var wg sync.WaitGroup
	for i := range bigPhotos {
		wg.Go(func() { errs[i] = do(ctx) })
	}
	wg.Wait()
	took = time.Since(start)
	close(stop)
	<-sampled
	var failed []string
	for _, e := range errs {
		if e != nil {
			failed = append(failed, e.Error())
		}
	}
	if len(failed) > 0 {
		err = fmt.Errorf("%d of %d big uploads failed: %s", len(failed), bigPhotos, strings.Join(compact(failed), "; "))
	}
	return idle, peak, took, err
}

func getBody(ctx context.Context, client *http.Client, u string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return string(b), err
}

// uploadsGoal: the 20 big uploads' growth of each kind's RSS.
func uploadsGoal(ms []UploadsMeasurement) (Goal, bool) {
	if len(ms) == 0 {
		return Goal{}, false
	}
	g := Goal{Name: fmt.Sprintf("replica RSS above a fresh replica's while %d photos of 5 MiB upload at once", bigPhotos), Target: "≤ 128 MiB", Met: true}
	var parts []string
	for _, m := range ms {
		grew := m.PeakRSS - min(m.PeakRSS, m.FreshRSS)
		parts = append(parts, fmt.Sprintf("%s +%d MiB (from %d)", m.Uploads, grew>>20, m.FreshRSS>>20))
		if grew > goalUploadRSS {
			g.Met = false
			g.Why += fmt.Sprintf("%s over by %d MiB; ", m.Uploads, (grew-goalUploadRSS)>>20)
		}
	}
	g.Measured = strings.Join(parts, ", ")
	g.Why = strings.TrimSuffix(g.Why, "; ")
	return g, true
}

// uploadsRows is the uploads table.
func uploadsRows(measured []UploadsMeasurement) (header []string, rows [][]string) {
	header = []string{"uploads", "upload 200 KB/s (clients)", "upload p50 / p99", "serve 200 KB/s", "serve p50 / p99", fmt.Sprintf("RSS fresh → after 200 KB → peak, %d × 5 MiB at once", bigPhotos), "ok"}
	for _, m := range measured {
		rows = append(rows, []string{m.Uploads, fmt.Sprintf("%.0f (%d)", m.UploadRate, m.Workers), ms(m.UploadP50) + " / " + ms(m.UploadP99),
			fmt.Sprintf("%.0f", m.ServeRate), ms(m.ServeP50) + " / " + ms(m.ServeP99),
			fmt.Sprintf("%d → %d → %d MiB (+%d) in %v", m.FreshRSS>>20, m.IdleRSS>>20, m.PeakRSS>>20, (m.PeakRSS-min(m.PeakRSS, m.FreshRSS))>>20, m.BigTook.Round(time.Millisecond)),
			fmt.Sprintf("%.1f%%", m.Success*100)})
	}
	return header, rows
}

// RunUploads runs only the uploads table (`bench -only uploads`). It
// writes no report; it fails when a request failed.
func RunUploads(ctx context.Context, o Options, w io.Writer) ([]UploadsMeasurement, error) {
	ms, err := runPart(ctx, o, w, uploadsBench)
	h, rows := uploadsRows(ms)
	g, ok := uploadsGoal(ms)
	var failed []string
	for _, m := range ms {
		if m.Success < 1 || len(m.Errors) > 0 {
			failed = append(failed, fmt.Sprintf("uploads %s: %.3f%% succeeded: %s", m.Uploads, m.Success*100, strings.Join(m.Errors, "; ")))
		}
	}
	return ms, finishPart(w, h, rows, g, ok, err, failed)
}
