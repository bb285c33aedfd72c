package lab

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints a run's result table: requests by status, retries,
// carts, latency, per replica, then the verdict.
func WriteTable(w io.Writer, r *Result) {
	st := r.Stats()
	t := r.Tally()
	fmt.Fprintf(w, "\n%s (%s): %.1fs\n", r.Scenario, r.Config, r.Duration.Seconds())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "requests\t%d\t%s\n", st.Requests, StatusText(st.ByStatus))
	fmt.Fprintf(tw, "failed requests\t%d\tno answer or 5xx (retries included)\n", st.Failed)
	fmt.Fprintf(tw, "retries\t%d\t\n", st.Retries)
	fmt.Fprintf(tw, "gave-up shoppers\t%d\tadds that failed after every retry\n", r.GaveUp)
	fmt.Fprintf(tw, "carts\t%d\t%s\n", len(r.Carts), t)
	fmt.Fprintf(tw, "latency\tp50 %s\tp99 %s\n", ms(st.P50), ms(st.P99))
	if r.Peeks > 0 {
		fmt.Fprintf(tw, "stale reads\t%d\tof %d reads by another device (the token without the version)\n", len(r.StaleReads), r.Peeks)
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "replica\trequests\tfailed requests\tp50\tp99\t")
	for _, rs := range r.PerReplica() {
		name := rs.Replica
		if name == "" {
			name = "(none)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t\n", name, rs.Requests, rs.Failed, ms(rs.P50), ms(rs.P99))
	}
	tw.Flush()

	for _, v := range r.Carts {
		if v.Verdict != Intact {
			fmt.Fprintf(w, "  cart of %s %s: %s\n", v.Shopper, v.Verdict, v.Why)
		}
	}
	for _, s := range r.StaleReads {
		fmt.Fprintf(w, "  stale read: %s\n", s)
	}
	writeLosses(w, r.Losses)
	fmt.Fprintln(w)
	if r.Pass {
		fmt.Fprintf(w, "PASS: observed what %s expects under %s\n", r.Scenario, r.Config)
		return
	}
	fmt.Fprintf(w, "FAIL: %s under %s did not do what it expects:\n", r.Scenario, r.Config)
	for _, d := range r.Differences {
		fmt.Fprintf(w, "  %s\n", d)
	}
}

// storeColumn is the store, with the profile and the Redis setup when it
// is not the default: "redis (sentinel, wait 1)", "memory (profile
// stateful)".
func storeColumn(c Config) string {
	var extra []string
	if c.Profile != "" {
		extra = append(extra, "profile "+c.Profile)
	}
	if c.Redis != "" && c.Redis != DefaultConfig.Redis {
		extra = append(extra, c.Redis)
	}
	if c.Wait != "" && c.Wait != DefaultConfig.Wait {
		extra = append(extra, "wait "+c.Wait)
	}
	if c.Cache != "" && c.Cache != DefaultConfig.Cache {
		extra = append(extra, "near-cache "+c.Cache)
	}
	if c.Jobs != "" && c.Jobs != DefaultConfig.Jobs {
		extra = append(extra, "jobs "+c.Jobs)
	}
	if c.Schedule != "" && c.Schedule != DefaultConfig.Schedule {
		extra = append(extra, "schedule "+c.Schedule)
	}
	if len(extra) == 0 {
		return c.Store
	}
	return c.Store + " (" + strings.Join(extra, ", ") + ")"
}

// StatusText is "303×412 503×12 none×1", statuses in order; "none" counts
// requests that got no answer.
func StatusText(by map[int]int) string {
	var codes []int
	for c := range by {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		name := fmt.Sprint(c)
		if c == 0 {
			name = "none"
		}
		parts = append(parts, fmt.Sprintf("%s×%d", name, by[c]))
	}
	return strings.Join(parts, " ")
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// WriteMatrix prints results as one Markdown table: every scenario under
// every configuration it applies to.
func WriteMatrix(w io.Writer, results []*Result, elapsed time.Duration) {
	fmt.Fprintln(w, "| scenario | store | lb | lock | expected | carts intact / lost / wrong (each phase) | requests | failed requests (no answer or 5xx) | gave-up shoppers | p99 | outcome |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		st := r.Stats()
		t := r.Tally()
		outcome := "as expected"
		if !r.Pass {
			outcome = "**NOT as expected**: " + strings.Join(r.Differences, "; ")
		}
		carts := fmt.Sprintf("%d / %d / %d", t.Intact, t.Lost, t.Wrong)
		if len(r.Looks) > 1 {
			// Each phase: a script that judges three times has three counts.
			var phases []string
			for _, l := range r.Looks {
				phases = append(phases, fmt.Sprintf("%d / %d / %d", l.Tally.Intact, l.Tally.Lost, l.Tally.Wrong))
			}
			carts = strings.Join(phases, " → ")
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %d | %d | %d | %s | %s |\n",
			r.Scenario, storeColumn(r.Config), r.Config.LB, r.Config.Lock, r.Expected(), carts,
			st.Requests, st.Failed, r.GaveUp, ms(st.P99), outcome)
	}
	fmt.Fprintln(w)
	seen := map[string]bool{}
	for _, r := range results {
		if !seen[r.Scenario] {
			seen[r.Scenario] = true
			fmt.Fprintf(w, "- **%s**: %s\n", r.Scenario, r.Lesson)
		}
	}
	fmt.Fprintf(w, "\n%d runs in %.0fs.\n", len(results), elapsed.Seconds())
}
