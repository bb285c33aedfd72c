package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestReceiptEventReachesOwner: with -jobs queue, the receipt job's result
// is published as an `order` event on the owner's GET /events stream: main
// hands the jobs the live events as their Notify.
func TestReceiptEventReachesOwner(t *testing.T) {
	base := startRun(t, map[string]string{"SHOP_DB": filepath.Join(t.TempDir(), "shop.db"), "SHOP_DRAIN": "0s",
		"SHOP_LOG_LEVEL": "warn", "SHOP_JOBS": "queue", "SHOP_JOB_DELAY": "300ms"})
	waitStatus(t, base+"/readyz", http.StatusOK)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, form url.Values) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := post("/cart/items", url.Values{"product_id": {"1"}, "quantity": {"1"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("add: %s", r.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
	stream, err := c.Do(req)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("GET /events: %v %v", stream, err)
	}
	defer stream.Body.Close()

	resp, err := c.Get(base + "/checkout")
	if err != nil {
		t.Fatal(err)
	}
	var page strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&page)
	resp.Body.Close()
	m := regexp.MustCompile(`name="idempotency_key" value="([^"]+)"`).FindStringSubmatch(page.String())
	if m == nil {
		t.Fatal("no idempotency key on /checkout")
	}
	r := post("/checkout", url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "address": {"1 Main Street"}, "idempotency_key": {m[1]}})
	id := strings.TrimPrefix(r.Header.Get("Location"), "/orders/")
	if r.StatusCode != http.StatusSeeOther || id == "" {
		t.Fatalf("checkout: %s to %q", r.Status, r.Header.Get("Location"))
	}
	lines := bufio.NewScanner(stream.Body)
	for lines.Scan() {
		if l := lines.Text(); strings.HasPrefix(l, "data:") && strings.Contains(l, id) && strings.Contains(l, "receipt ready") {
			return
		}
	}
	t.Fatalf("no `receipt ready` event for order %s on the owner's stream: %v", id, lines.Err())
}

// TestStateCountsJobsAndSchedule: /api/state has the jobs and schedule
// rows; a receipt in a memory replica's hands counts as lost if killed.
func TestStateCountsJobsAndSchedule(t *testing.T) {
	base := startRun(t, map[string]string{"SHOP_DB": filepath.Join(t.TempDir(), "shop.db"), "SHOP_DRAIN": "0s",
		"SHOP_LOG_LEVEL": "warn", "SHOP_JOBS": "memory", "SHOP_JOB_DELAY": "5s"})
	waitStatus(t, base+"/readyz", http.StatusOK)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := func(path string, v url.Values) {
		t.Helper()
		resp, err := c.PostForm(base+path, v)
		if err != nil || resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST %s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}
	form("/cart/items", url.Values{"product_id": {"1"}, "quantity": {"1"}})
	resp, err := c.Get(base + "/checkout")
	if err != nil {
		t.Fatal(err)
	}
	var page strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&page)
	resp.Body.Close()
	m := regexp.MustCompile(`name="idempotency_key" value="([^"]+)"`).FindStringSubmatch(page.String())
	if m == nil {
		t.Fatal("no idempotency key on /checkout")
	}
	form("/checkout", url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "address": {"1 Main Street"}, "idempotency_key": {m[1]}})

	resp, err = http.Get(base + "/api/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		Kinds []struct {
			Kind, Lives  string
			HeldHere     int  `json:"held_here"`
			LostIfKilled bool `json:"lost_if_killed"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, k := range a.Kinds {
		switch k.Kind {
		case "jobs":
			seen[k.Kind] = true
			if k.Lives != "replica" || k.HeldHere != 1 || !k.LostIfKilled {
				t.Errorf("jobs row %+v; want replica, 1 held, lost if killed", k)
			}
		case "schedule":
			seen[k.Kind] = true
			if k.Lives != "replica" || k.LostIfKilled {
				t.Errorf("schedule row %+v; want replica (local), nothing lost", k)
			}
		}
	}
	if !seen["jobs"] || !seen["schedule"] {
		t.Errorf("rows %+v lack jobs or schedule", a.Kinds)
	}
}
