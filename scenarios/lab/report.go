package lab

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
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
		Config:   r.Config.Spelled(),
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
	v.Outcome = outcome(r)
	v.Timeline = timeline(r, colors)
	if aboutLatency(r) {
		lv := latencyChart(r, v.Timeline)
		v.Latency = &lv
	}
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
		if q.Stale {
			status += " (stale read)"
		}
		rows = append(rows, templates.SequenceRow{
			At: seconds(q.At), Shopper: q.Shopper, Action: q.Action,
			Replica: q.Replica, Color: colors[q.Replica], Status: status, Failed: q.Failed(), Stale: q.Stale, Retry: q.Retry,
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

// The timeline's geometry: as wide as a projector's page, labels in lanes
// above the plot so that none overlaps another or is cut.
const (
	plotLeft   = 48
	plotMaxW   = 1680 // a 1920 px projector, less the page's margins
	laneHeight = 15
	charWidth  = 6.4 // an 11 px system font's average advance, generously
)

// lane places labels in rows: each label goes into the first row where it
// does not touch the one before it.
type lanes struct{ ends []int }

// place returns the row for a label from x to x+w.
func (l *lanes) place(x, w int) int {
	for i, end := range l.ends {
		if x > end+8 {
			l.ends[i] = x + w
			return i
		}
	}
	l.ends = append(l.ends, x+w)
	return len(l.ends) - 1
}

func labelWidth(s string) int { return int(float64(len([]rune(s)))*charWidth) + 6 }

// bandColors tell the kinds of stretch apart: a drain or a restart (blue),
// a fault on Redis (orange), a pause (purple).
func bandColor(span string) string {
	switch {
	case strings.HasPrefix(span, "partition"), strings.HasPrefix(span, "delay"):
		return "#ff7f0e"
	case strings.HasPrefix(span, "paused"):
		return "#9467bd"
	}
	return "#1f77b4"
}

// marks lays out the events: moments as dashed lines, stretches as bands,
// each label in a lane above the plot. It returns them and the height of
// the lanes.
func marks(events []Event, xOf func(time.Duration) int, end time.Duration, top int) ([]templates.TimelineEvent, []templates.TimelineBand, int) {
	var ls lanes
	var evs []templates.TimelineEvent
	var bands []templates.TimelineBand
	type pending struct {
		at    time.Duration
		label string
	}
	open := map[string]pending{}
	var order []string
	for _, e := range events {
		switch {
		case e.Begins:
			if _, ok := open[e.Span]; !ok {
				order = append(order, e.Span)
			}
			open[e.Span] = pending{e.At, e.Text}
		case e.Ends:
			p, ok := open[e.Span]
			if !ok {
				continue
			}
			delete(open, e.Span)
			bands = append(bands, templates.TimelineBand{X: xOf(p.at), W: max(2, xOf(e.At)-xOf(p.at)), Label: p.label + " → " + e.Text, Color: bandColor(e.Span)})
		case e.Text != "":
			evs = append(evs, templates.TimelineEvent{X: xOf(e.At), Label: e.Text})
		}
	}
	for _, k := range order {
		if p, ok := open[k]; ok {
			bands = append(bands, templates.TimelineBand{X: xOf(p.at), W: max(2, xOf(end)-xOf(p.at)), Label: p.label + " (until the end)", Color: bandColor(k)})
		}
	}
	// Lanes: bands first (they are the lesson), then moments.
	row := map[int]int{}
	for i := range bands {
		row[-1-i] = ls.place(bands[i].X, labelWidth(bands[i].Label))
	}
	for i := range evs {
		row[i] = ls.place(evs[i].X, labelWidth(evs[i].Label))
	}
	h := len(ls.ends) * laneHeight
	for i := range bands {
		bands[i].LabelY = top - h + row[-1-i]*laneHeight + 11
	}
	for i := range evs {
		evs[i].LabelY = top - h + row[i]*laneHeight + 11
	}
	return evs, bands, h
}

// timeline lays out the SVG: one stacked bar per bucket, failures as a red
// bar above the plot's top edge, events as dashed lines and stretches
// (drains, pauses, partitions, delays) as bands, every label in a lane of
// its own above the plot.
func timeline(r *Result, colors map[string]string) templates.TimelineView {
	const (
		plotH     = 240
		failBandH = 14
	)
	end := r.Duration
	for _, q := range r.Requests {
		end = max(end, q.At+q.Latency)
	}
	n := int(end/bucket) + 1
	// The whole width, whatever the length: the SVG scales down on a
	// smaller screen (max-width: 100%), and a projector shows it whole.
	plotW := plotMaxW
	xOf := func(d time.Duration) int { return plotLeft + int(float64(d)/float64(bucket)*float64(plotW)/float64(n)) }
	// The lanes' height decides where the plot starts; lay them out at 0
	// first, then shift.
	evs, bands, lanesH := marks(r.Events, xOf, end, 0)
	top := 24 + failBandH + lanesH + 8
	for i := range evs {
		evs[i].LabelY += top - 6 - failBandH
	}
	for i := range bands {
		bands[i].LabelY += top - 6 - failBandH
	}
	tl := templates.TimelineView{
		Left: plotLeft, Top: top, PlotW: plotW, PlotH: plotH,
		Width: plotLeft + plotW + 16, Height: top + plotH + 40,
		Bucket: "100 ms", Carts: len(r.Carts), LostCarts: r.Tally().Lost, WrongCarts: r.Tally().Wrong,
		Events: evs, Bands: bands,
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
	for i := range counts {
		x := plotLeft + i*plotW/n
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
				Title: fmt.Sprintf("%.1f s: %s (no answer or 5xx)", float64(i)*bucket.Seconds(), plural(fails[i], "failed request"))})
		}
	}
	tl.XTicks = xTicks(end, xOf)
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

// xTicks are whole seconds, or every 5 s on a long run.
func xTicks(end time.Duration, xOf func(time.Duration) int) []templates.TimelineTick {
	step := time.Second
	if end > 30*time.Second {
		step = 5 * time.Second
	}
	var ticks []templates.TimelineTick
	for d := time.Duration(0); d <= end; d += step {
		ticks = append(ticks, templates.TimelineTick{Pos: xOf(d), Label: fmt.Sprintf("%.0f", d.Seconds())})
	}
	return ticks
}

// aboutLatency: the script moves Redis away or expects a latency.
func aboutLatency(r *Result) bool {
	if strings.Contains(r.Source, "\ndelay redis") || strings.HasPrefix(r.Source, "delay redis") {
		return true
	}
	for _, c := range r.Checks {
		if strings.HasPrefix(c.Expected, "p99 below") || strings.HasPrefix(c.Expected, "p50 below") {
			return true
		}
	}
	return false
}

// latencyBucket is coarser than the timeline's: a percentile needs a
// few requests to mean something.
const latencyBucket = 250 * time.Millisecond

// latencyChart draws p50 and p99 per latencyBucket on the timeline's x
// axis, with its events and bands.
func latencyChart(r *Result, tl templates.TimelineView) templates.LatencyView {
	const plotH = 200
	end := r.Duration
	for _, q := range r.Requests {
		end = max(end, q.At+q.Latency)
	}
	n := int(end/bucket) + 1
	xOf := func(d time.Duration) int {
		return tl.Left + int(float64(d)/float64(bucket)*float64(tl.PlotW)/float64(n))
	}
	evs, bands, lanesH := marks(r.Events, xOf, end, 0)
	top := 20 + lanesH + 8
	for i := range evs {
		evs[i].LabelY += top - 6
	}
	for i := range bands {
		bands[i].LabelY += top - 6
	}
	nb := int(end/latencyBucket) + 1
	lat := make([][]time.Duration, nb)
	for _, q := range r.Requests {
		if q.Failed() {
			continue
		}
		i := min(int(q.At/latencyBucket), nb-1)
		lat[i] = append(lat[i], q.Latency)
	}
	var peak time.Duration
	p50s, p99s := make([]time.Duration, nb), make([]time.Duration, nb)
	for i := range lat {
		slices.Sort(lat[i])
		p50s[i], p99s[i] = percentile(lat[i], 50), percentile(lat[i], 99)
		peak = max(peak, p99s[i])
	}
	var threshold time.Duration
	for _, c := range r.Checks {
		if !c.Applies {
			continue
		}
		var d string
		if _, err := fmt.Sscanf(c.Expected, "p99 below %s", &d); err != nil {
			fmt.Sscanf(c.Expected, "p50 below %s", &d)
		}
		if v, err := time.ParseDuration(strings.TrimSuffix(d, " in this phase")); err == nil {
			threshold = max(threshold, v)
		}
	}
	peak = max(peak, threshold)
	ceilMS := niceCeil(max(1, int(peak.Milliseconds())+1))
	yOf := func(d time.Duration) int {
		return top + plotH - int(float64(d)/float64(time.Duration(ceilMS)*time.Millisecond)*plotH)
	}
	pts := func(ps []time.Duration) string {
		var b strings.Builder
		for i, p := range ps {
			if len(lat[i]) == 0 {
				continue
			}
			fmt.Fprintf(&b, "%d,%d ", xOf(time.Duration(i)*latencyBucket+latencyBucket/2), yOf(p))
		}
		return strings.TrimSpace(b.String())
	}
	lv := templates.LatencyView{
		Left: tl.Left, Top: top, PlotW: tl.PlotW, PlotH: plotH,
		Width: tl.Width, Height: top + plotH + 40,
		P50: pts(p50s), P99: pts(p99s), Events: evs, Bands: bands,
		XTicks: xTicks(end, xOf), Bucket: "250 ms",
	}
	for _, f := range []int{0, 1, 2, 3, 4} {
		val := ceilMS * f / 4
		label := fmt.Sprintf("%d ms", val)
		if val >= 1000 {
			label = strconv.FormatFloat(float64(val)/1000, 'f', -1, 64) + " s"
		}
		lv.YTicks = append(lv.YTicks, templates.TimelineTick{Pos: yOf(time.Duration(val) * time.Millisecond), Label: label})
	}
	if threshold > 0 {
		lv.Threshold = &templates.TimelineTick{Pos: yOf(threshold), Label: "expected below " + threshold.String()}
	}
	return lv
}

// outcome is the report's lead: each phase's outcome by kind, in words.
func outcome(r *Result) []templates.OutcomeRow {
	looks := r.Looks
	if len(looks) == 0 {
		// A result from before looks were recorded: one phase.
		st := r.Stats()
		looks = []Look{{Tally: r.Tally(), Carts: len(r.Carts), Requests: st.Requests, Failed: st.Failed, Stale: len(r.StaleReads), Peeks: r.Peeks, GaveUp: r.GaveUp}}
	}
	var rows []templates.OutcomeRow
	for i, l := range looks {
		row := templates.OutcomeRow{Items: outcomeItems(l)}
		if len(looks) > 1 {
			row.Phase = phaseName(i, l)
		}
		row.Expected, row.Checked = true, false
		for _, c := range r.Checks {
			if !c.Applies || lookOf(looks, c.Line) != i {
				continue
			}
			row.Checked = true
			row.Expected = row.Expected && c.OK
		}
		rows = append(rows, row)
	}
	return rows
}

// lookOf is the look that judged the expectation on line: the last one
// that began at or before it.
func lookOf(looks []Look, line int) int {
	at := len(looks) - 1
	for i, l := range looks {
		if l.Line != 0 && l.Line <= line {
			at = i
		}
	}
	return at
}

// phaseName names a phase by its steps that change something: "phase 3:
// rekey shop2 with wrong".
func phaseName(i int, l Look) string {
	var faults, shopping []string
	for _, st := range l.Steps {
		switch {
		case strings.HasPrefix(st, "sleep "), st == "wait for load", strings.HasPrefix(st, "start ") && strings.HasSuffix(st, " replicas"):
		case strings.HasPrefix(st, "as "), strings.HasPrefix(st, "load "):
			shopping = append(shopping, st)
		default:
			faults = append(faults, st)
		}
	}
	// What was done to the cluster says the phase; the shopping only when
	// nothing was.
	did := faults
	if len(did) == 0 {
		did = shopping
	}
	if len(did) > 4 {
		did = append(did[:3:3], fmt.Sprintf("and %d more steps", len(did)-3))
	}
	name := fmt.Sprintf("phase %d", i+1)
	if len(did) > 0 {
		name += ": " + strings.Join(did, "; ")
	}
	return name
}

// outcomeItems say a phase's outcome by kind.
func outcomeItems(l Look) []templates.OutcomeItem {
	t := l.Tally
	items := []templates.OutcomeItem{
		{Text: fmt.Sprintf("%d of %s lost", t.Lost, plural(l.Carts, "cart")), Bad: t.Lost > 0},
		{Text: fmt.Sprintf("%s with lost updates", plural(t.Fewer, "cart")), Bad: t.Fewer > 0},
	}
	if other := t.Wrong - t.Fewer; other > 0 {
		items = append(items, templates.OutcomeItem{Text: fmt.Sprintf("%s holding more than was added", plural(other, "cart")), Bad: true})
	}
	if l.Peeks > 0 {
		items = append(items, templates.OutcomeItem{Text: fmt.Sprintf("%s in %s by another device", plural(l.Stale, "stale read"), plural(l.Peeks, "read")), Bad: l.Stale > 0})
	}
	if l.Requests > 0 {
		items = append(items, templates.OutcomeItem{Text: fmt.Sprintf("%s of %d (no answer or 5xx)", plural(l.Failed, "failed request"), l.Requests), Bad: l.Failed > 0})
	}
	if l.GaveUp > 0 {
		items = append(items, templates.OutcomeItem{Text: plural(l.GaveUp, "shopper action") + " given up", Bad: true})
	}
	return items
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
