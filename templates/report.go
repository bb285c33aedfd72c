package templates

// View structs of the scenario lab's report (report.templ): one
// self-contained HTML page per scenario run. The lab computes every number
// and coordinate; the components only lay them out.

// ReportView is one scenario run.
type ReportView struct {
	Title    string // "failover — store=memory lb=sticky lock=on"
	Scenario string
	Lesson   string
	Config   string
	Pass     bool
	// Outcome leads the report: what happened, by kind and in words (carts
	// lost, lost updates, stale reads, failed requests), one row per phase
	// when the script judges more than once.
	Outcome     []OutcomeRow
	Verdict     string   // "observed what the scenario expects" or what differed
	Differences []string // "file:line: expected X, observed Y"
	Timeline    TimelineView
	// Latency, for a scenario about latency (a delay, a latency
	// expectation), is p50 and p99 over time; nil otherwise.
	Latency  *LatencyView
	Summary  []ReportPair // requests by status, retries, carts, latency
	Replicas []ReplicaRow
	Carts    []CartRow
	Checks   []CheckRow
	Story    []ReportPair // the narrative as the terminal told it: time → line
	// Sequence, for a short scenario, is every request one by one with the
	// events between them, shown instead of the timeline (whose bars would
	// all stand at x = 0).
	Sequence []SequenceRow
	Script   string // the scenario's script, as written
}

// OutcomeRow is one phase's outcome: what its steps were, what happened
// to the carts and requests, and whether that is what the script expects.
type OutcomeRow struct {
	Phase    string // "after rekey shop2 with wrong" or "" for a single phase
	Items    []OutcomeItem
	Expected bool // every expectation of the phase held
	Checked  bool // the phase had an expectation that applied
}

// OutcomeItem is one kind of outcome in words: "2 of 14 carts lost".
type OutcomeItem struct {
	Text string
	Bad  bool // something was lost, stale or failed
}

// LatencyView is the latency-over-time chart: p50 and p99 of the requests
// sent in each bucket, with the script's events.
type LatencyView struct {
	Width, Height int
	Left, Top     int
	PlotW, PlotH  int
	P50, P99      string        // SVG polyline points
	Threshold     *TimelineTick // a latency expectation's D, as a horizontal line
	Bands         []TimelineBand
	Events        []TimelineEvent
	XTicks        []TimelineTick
	YTicks        []TimelineTick
	Bucket        string
}

// SequenceRow is one line of the sequence view: a request, or an event
// between requests.
type SequenceRow struct {
	At      string // "0.12 s"
	Shopper string
	Action  string // "adds 2 of product 1", "opens the catalog"
	Replica string // "" when no replica answered
	Color   string // the replica's colour
	Status  string // "303", "no answer"
	Failed  bool   // no answer or a 5xx
	Stale   bool   // a stale read
	Retry   bool
	Event   string // for an event row: what happened; the other fields are empty
}

// ReportPair is a label and its value.
type ReportPair struct {
	Label string
	Value string
}

// ReplicaRow is one replica's line in the result table.
type ReplicaRow struct {
	Replica  string
	Color    string // the replica's colour in the timeline
	Requests int
	Failed   int
	P50      string
	P99      string
}

// CartRow is the judge's verdict on one shopper's cart.
type CartRow struct {
	Shopper string
	Verdict string // intact, lost or wrong
	Why     string
}

// CheckRow is one expectation of the script.
type CheckRow struct {
	Line     int
	Text     string
	Applies  bool
	OK       bool
	Observed string
}

// TimelineView is the SVG timeline: requests per time bucket stacked by the
// replica that answered, failures marked above, events as vertical lines.
type TimelineView struct {
	Width, Height int // the whole SVG
	Left, Top     int // the plot's origin (top-left)
	PlotW, PlotH  int
	Bucket        string // "100 ms"
	Bars          []TimelineBar
	Failures      []TimelineBar
	Events        []TimelineEvent
	// Bands are stretches of time: a drain, a pause, a partition, a delay.
	Bands      []TimelineBand
	XTicks     []TimelineTick
	YTicks     []TimelineTick
	Legend     []LegendItem
	LostCarts  int
	WrongCarts int
	Carts      int
}

// TimelineBar is one rectangle.
type TimelineBar struct {
	X, Y, W, H int
	Color      string
	Title      string // tooltip
}

// TimelineEvent is a vertical line with a label.
type TimelineEvent struct {
	X      int
	LabelY int
	Label  string
}

// TimelineBand is a shaded stretch of time with its label above the plot.
type TimelineBand struct {
	X, W   int
	LabelY int
	Label  string
	Color  string
}

// TimelineTick is an axis tick at a pixel position.
type TimelineTick struct {
	Pos   int
	Label string
}

// LegendItem names a colour.
type LegendItem struct {
	Name  string
	Color string
}
