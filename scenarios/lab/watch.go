package lab

// Watchers: a shopper's browser tab that keeps GET /events open through
// nginx, as EventSource does: it reconnects after a stream ends (after the
// retry: hint, or a second), sending the id of the last event it got as
// Last-Event-ID, wherever nginx sends it. The judge compares the stock
// events it saw with the stock changes the lab's checkouts made while it
// watched.

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// watcher is one shopper's open event stream.
type watcher struct {
	name string
	base string
	// from is how many stock changes the lab had made when the watch
	// began: the watcher is owed every change after it.
	from int

	mu       sync.Mutex
	lastID   string
	seen     map[string]bool // ids of the stock events seen
	missed   []string        // the missed notices' messages
	replicas []string        // every replica that held the stream, in order
	ready    chan struct{}   // closed once the first stream is open
	cancel   context.CancelFunc
	done     chan struct{}
}

// WatchVerdict is what the judge saw of one watcher.
type WatchVerdict struct {
	Shopper  string
	Saw      int      // distinct stock events
	Owed     int      // stock changes made while it watched
	Missed   []string // missed notices the shop sent
	Replicas []string // the replicas that held its stream, in order
}

// missing reports whether the watcher missed events: the shop said so, or
// it saw fewer changes than were made.
func (v WatchVerdict) missing() bool { return len(v.Missed) > 0 || v.Saw < v.Owed }

func (v WatchVerdict) String() string {
	s := fmt.Sprintf("%s saw %d of %d stock changes, on %s", v.Shopper, v.Saw, v.Owed, strings.Join(v.Replicas, " then "))
	if len(v.Missed) > 0 {
		s += fmt.Sprintf("; told %d× it missed events", len(v.Missed))
	}
	return s
}

// watch opens the shopper's stream and keeps it open until the run ends.
func (r *runner) watch(ctx context.Context, st *Step) error {
	s := r.shopper(st.Shopper)
	if r.watchers[s.name] != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &watcher{name: s.name, base: r.url, from: r.stockChanges(), seen: map[string]bool{},
		ready: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	r.watchers[s.name] = w
	go w.run(ctx, s.client.Jar)
	select {
	case <-w.ready:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s: GET /events did not open within 5s", s.name)
	}
	r.rec.say(r.rec.since(), fmt.Sprintf("%s watches stock (stream on %s)", s.name, w.replica()))
	return nil
}

// replica is the replica holding the stream now.
func (w *watcher) replica() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.replicas) == 0 {
		return ""
	}
	return w.replicas[len(w.replicas)-1]
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

// run is the EventSource loop: open, read until the stream ends, wait
// the retry time, open again from the last id.
func (w *watcher) run(ctx context.Context, jar http.CookieJar) {
	defer close(w.done)
	// Its own client: a stream outlives the shoppers' request timeout.
	client := &http.Client{Jar: jar}
	var once sync.Once
	for ctx.Err() == nil {
		retry := time.Second
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.base+"/events", nil)
		w.mu.Lock()
		if w.lastID != "" {
			req.Header.Set("Last-Event-ID", w.lastID)
		}
		w.mu.Unlock()
		resp, err := client.Do(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			w.mu.Lock()
			w.replicas = append(w.replicas, resp.Header.Get("X-Served-By"))
			w.mu.Unlock()
			once.Do(func() { close(w.ready) })
			retry = w.read(resp, retry)
		}
		if resp != nil {
			resp.Body.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
}

// read takes events from one stream until it ends; it returns the retry
// time the stream asked for.
func (w *watcher) read(resp *http.Response, retry time.Duration) time.Duration {
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var id, typ, data string
	for sc.Scan() {
		name, value, _ := strings.Cut(sc.Text(), ": ")
		switch name {
		case "id":
			id = value
		case "event":
			typ = value
		case "data":
			data = value
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil {
				retry = time.Duration(ms) * time.Millisecond
			}
		case "":
			w.mu.Lock()
			if id != "" {
				w.lastID = id
			}
			switch {
			case typ == "stock":
				w.seen[id] = true
			case typ == "notice" && strings.Contains(data, `"state":"missed"`):
				w.missed = append(w.missed, data)
			}
			w.mu.Unlock()
			id, typ, data = "", "", ""
		}
	}
	return retry
}

// verdict is what the watcher saw so far.
func (w *watcher) verdict(owed int) WatchVerdict {
	w.mu.Lock()
	defer w.mu.Unlock()
	return WatchVerdict{Shopper: w.name, Saw: len(w.seen), Owed: owed,
		Missed: append([]string(nil), w.missed...), Replicas: append([]string(nil), w.replicas...)}
}

// stockChanges is how many product stocks the lab's checkouts changed.
func (r *runner) stockChanges() int {
	r.rec.mu.Lock()
	defer r.rec.mu.Unlock()
	return r.rec.stockChanges
}

// judgeWatchers gives every watcher a moment to get the events in flight
// (at most 3 s, less as soon as each has what it is owed), then says what
// each saw.
func (r *runner) judgeWatchers() []WatchVerdict {
	total := r.stockChanges()
	deadline := time.Now().Add(3 * time.Second)
	var out []WatchVerdict
	for _, name := range r.order {
		w := r.watchers[name]
		if w == nil {
			continue
		}
		for w.verdict(total-w.from).Saw < total-w.from && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		out = append(out, w.verdict(total-w.from))
	}
	return out
}

func (r *runner) stopWatchers() {
	for _, w := range r.watchers {
		w.stop()
	}
}
