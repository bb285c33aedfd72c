package lab

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/statelab/shop/static"
	"github.com/statelab/shop/templates"
)

// bucket is the timeline's resolution.
const bucket = 100 * time.Millisecond

// failureColor marks requests that got no answer or a 5xx. No replica's
// colour is red (static.ReplicaColor).
const failureColor = "#d62728"

// sequenceMax is the most requests a scenario may make to get the
// request-by-request view instead of the timeline: a few named shoppers,
// no load.
const sequenceMax = 120

// WriteReport writes a self-contained HTML report of a run: the timeline,
// the result table, the expectations, the carts and the script.
func WriteReport(w io.Writer, r *Result) error {
	var buf bytes.Buffer
	if err := templates.Report(reportView(r)).Render(context.Background(), &buf); err != nil {
		return fmt.Errorf("lab: render report: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func reportView(r *Result) templates.ReportView {
	st := r.Stats()
	t := r.Tally()
	v := templates.ReportView{
		Title:    fmt.Sprintf("%s — %s", r.Scenario, r.Config),
		Scenario: r.Scenario,
		Lesson:   r.Lesson,
		Config:   r.Config.String(),
		Pass:     r.Pass,
		Summary: []templates.ReportPair{
			{Label: "requests", Value: fmt.Sprintf("%d (%s)", st.Requests, StatusText(st.ByStatus))},
			{Label: "failed requests", Value: fmt.Sprintf("%d without an answer or with a 5xx (retries included)", st.Failed)},
			{Label: "retries", Value: fmt.Sprint(st.Retries)},
			{Label: "gave-up shoppers", Value: fmt.Sprintf("%d adds failed after every retry", r.GaveUp)},
			{Label: "carts", Value: t.String()},
			{Label: "latency", Value: fmt.Sprintf("p50 %s, p99 %s", ms(st.P50), ms(st.P99))},
			{Label: "duration", Value: fmt.Sprintf("%.1f s", r.Duration.Seconds())},
		},
		Differences: r.Differences,
	}
	if r.Peeks > 0 {
		stale := fmt.Sprintf("%d of %d reads by another device (the session token without the version)", len(r.StaleReads), r.Peeks)
		for i, sr := range r.StaleReads {
			if i == 3 {
				stale += fmt.Sprintf("; and %d more", len(r.StaleReads)-i)
				break
			}
			stale += "; " + sr.String()
		}
		v.Summary = append(v.Summary, templates.ReportPair{Label: "stale reads", Value: stale})
	}
	if r.Pass {
		v.Verdict = "observed what the scenario expects under this configuration"
	} else {
		v.Verdict = "the outcome differs from what the scenario expects"
	}
	colors := replicaColors(r.Requests)
	for _, rs := range r.PerReplica() {
		name, color := rs.Replica, colors[rs.Replica]
		if name == "" {
			name, color = "(no replica answered)", failureColor
		}
		v.Replicas = append(v.Replicas, templates.ReplicaRow{Replica: name, Color: color, Requests: rs.Requests, Failed: rs.Failed, P50: ms(rs.P50), P99: ms(rs.P99)})
	}
	for _, c := range r.Carts {
		v.Carts = append(v.Carts, templates.CartRow{Shopper: c.Shopper, Verdict: c.Verdict, Why: c.Why})
	}
	for _, c := range r.Checks {
		v.Checks = append(v.Checks, templates.CheckRow{Line: c.Line, Text: c.Text, Applies: c.Applies, OK: c.OK, Observed: c.Observed})
	}
	for _, l := range r.Story {
		v.Story = append(v.Story, templates.ReportPair{Label: seconds(l.At), Value: l.Text})
	}
	v.Script = r.Source
	v.Timeline = timeline(r, colors)
	if len(r.Requests) <= sequenceMax {
		v.Sequence = sequence(r, colors)
	}
	return v
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// sequence lists every request in the order it was sent, with the events
// between them.
func sequence(r *Result, colors map[string]string) []templates.SequenceRow {
	reqs := slices.Clone(r.Requests)
	slices.SortStableFunc(reqs, func(a, b Request) int { return cmp.Compare(a.At, b.At) })
	var rows []templates.SequenceRow
	events := r.Events
	for _, q := range reqs {
		for len(events) > 0 && events[0].At <= q.At {
			rows = append(rows, templates.SequenceRow{At: seconds(events[0].At), Event: events[0].Text})
			events = events[1:]
		}
		status := fmt.Sprint(q.Status)
		if q.Status == 0 {
			status = "no answer"
		}
		rows = append(rows, templates.SequenceRow{
			At: seconds(q.At), Shopper: q.Shopper, Action: q.Action,
			Replica: q.Replica, Color: colors[q.Replica], Status: status, Failed: q.Failed(), Retry: q.Retry,
		})
	}
	for _, e := range events {
		rows = append(rows, templates.SequenceRow{At: seconds(e.At), Event: e.Text})
	}
	return rows
}

// replicaColors gives every replica that answered its fixed colour, the
// ribbon's: shop2 looks the same in every report and on every page.
func replicaColors(reqs []Request) map[string]string {
	colors := map[string]string{}
	for _, q := range reqs {
		if q.Replica != "" {
			_, colors[q.Replica] = static.ReplicaColor(q.Replica)
		}
	}
	return colors
}

func sortReplicas(names []string) {
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && replicaLess(names[j], names[j-1]); j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
}

// timeline lays out the SVG: one stacked bar per bucket, failures as a red
// bar above the plot's top edge, events as dashed lines.
func timeline(r *Result, colors map[string]string) templates.TimelineView {
	const (
		left, top    = 44, 56
		plotH        = 220
		minW, maxW   = 600, 1040
		failBandH    = 14
		labelSpacing = 13
	)
	end := r.Duration
	for _, q := range r.Requests {
		end = max(end, q.At+q.Latency)
	}
	n := int(end/bucket) + 1
	barW := max(2, min(12, maxW/n))
	plotW := max(minW, n*barW)
	tl := templates.TimelineView{
		Left: left, Top: top, PlotW: plotW, PlotH: plotH,
		Width: left + plotW + 16, Height: top + plotH + 40,
		Bucket: "100 ms", Carts: len(r.Carts), LostCarts: r.Tally().Lost, WrongCarts: r.Tally().Wrong,
	}

	// Count per bucket and replica; failures apart.
	counts := make([]map[string]int, n)
	fails := make([]int, n)
	for i := range counts {
		counts[i] = map[string]int{}
	}
	peak := 1
	for _, q := range r.Requests {
		i := int(q.At / bucket)
		if i >= n {
			i = n - 1
		}
		if q.Failed() {
			fails[i]++
		}
		if q.Replica != "" && !q.Failed() {
			counts[i][q.Replica]++
		}
	}
	for i := range counts {
		sum := 0
		for _, c := range counts[i] {
			sum += c
		}
		peak = max(peak, sum)
	}
	scale := float64(plotH) / float64(niceCeil(peak))
	names := make([]string, 0, len(colors))
	for name := range colors {
		names = append(names, name)
	}
	sortReplicas(names)
	xOf := func(d time.Duration) int { return left + int(float64(d)/float64(bucket)*float64(plotW)/float64(n)) }
	for i := range counts {
		x := left + i*plotW/n
		w := max(1, plotW/n-1)
		y := top + plotH
		for _, name := range names {
			c := counts[i][name]
			if c == 0 {
				continue
			}
			h := max(1, int(float64(c)*scale))
			y -= h
			tl.Bars = append(tl.Bars, templates.TimelineBar{X: x, Y: y, W: w, H: h, Color: colors[name],
				Title: fmt.Sprintf("%.1f s: %d by %s", float64(i)*bucket.Seconds(), c, name)})
		}
		if fails[i] > 0 {
			h := min(failBandH, 3+fails[i])
			tl.Failures = append(tl.Failures, templates.TimelineBar{X: x, Y: top - 2 - h, W: w, H: h, Color: failureColor,
				Title: fmt.Sprintf("%.1f s: %d failed requests (no answer or 5xx)", float64(i)*bucket.Seconds(), fails[i])})
		}
	}
	for i, e := range r.Events {
		// Labels step down so neighbours do not overwrite each other.
		tl.Events = append(tl.Events, templates.TimelineEvent{X: xOf(e.At), LabelY: top + 12 + (i%4)*labelSpacing, Label: shortEvent(e.Text)})
	}
	step := time.Second
	if end > 20*time.Second {
		step = 5 * time.Second
	}
	for d := time.Duration(0); d <= end; d += step {
		tl.XTicks = append(tl.XTicks, templates.TimelineTick{Pos: xOf(d), Label: fmt.Sprintf("%.0f", d.Seconds())})
	}
	top2 := niceCeil(peak)
	for _, f := range []int{0, 1, 2, 3, 4} {
		val := top2 * f / 4
		tl.YTicks = append(tl.YTicks, templates.TimelineTick{Pos: top + plotH - int(float64(val)*scale), Label: fmt.Sprint(val)})
	}
	for _, name := range names {
		tl.Legend = append(tl.Legend, templates.LegendItem{Name: name, Color: colors[name]})
	}
	tl.Legend = append(tl.Legend, templates.LegendItem{Name: "failed requests (above the plot)", Color: failureColor})
	return tl
}

// niceCeil rounds up to 4, 8, 12, 20, 40... so the axis ticks are whole.
func niceCeil(n int) int {
	for _, c := range []int{4, 8, 12, 20, 40, 60, 80, 100, 200, 400, 800} {
		if n <= c {
			return c
		}
	}
	return (n + 399) / 400 * 400
}

// shortEvent keeps an event label short enough for the timeline.
func shortEvent(s string) string {
	if r := []rune(s); len(r) > 40 {
		return string(r[:40]) + "…"
	}
	return s
}
