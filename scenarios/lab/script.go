package lab

// The scenario script language, in the spirit of golang/website's
// internal/webtest and rogpeppe/go-internal's testscript: one small
// plain-text file per scenario that a workshop can read aloud. A script is
// a header (the lesson and the configurations it applies to) followed by
// steps, one per line. Every step and every expectation is one entry of a
// table (steps.go, expect.go) holding its form, its help, an example, how
// it parses and how it runs; docs/scenarios.md documents the same table and
// a test parses every example in it.

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/statelab/shop/session"
)

// Script is a parsed scenario.
type Script struct {
	Name    string   // from the file name: "failover"
	File    string   // the file's path, for messages: "scenarios/lab/scripts/failover.txt"
	Source  string   // the script as written
	Lesson  string   // one line: what the scenario teaches
	Configs []Config // the configurations it applies to, from "run with" lines
	Steps   []Step
}

// Config is one cluster configuration a scenario runs under.
type Config struct {
	// Profile is the shop's -profile every replica starts with: stateful,
	// stateless, or "" for none (each state flag set on its own). A
	// configuration with a profile takes the profile's values for the
	// keys a "run with" line leaves unsaid (profiles).
	Profile string
	Store   string // a session store kind (configKeys["store"])
	// LB is nginx's policy: roundrobin, sticky, or noretry (round robin
	// that never retries on another replica, like an L4 balancer or
	// kube-proxy, with the replica list following readiness).
	LB    string
	Lock  string // on or off
	Redis string // single, or sentinel: a primary and a replica under three sentinels
	Wait  string // replicas a session write waits for (WAIT N): 0 or 1
	// Cache is the near-cache of redis sessions: off, on, or uninvalidated
	// (on, with invalidation switched off: the teaching mode).
	Cache string
	// Uploads is where review photos live: disk (each replica's own) or
	// s3 (an object store every replica reads).
	Uploads string
	// Jobs is where receipt jobs run: memory or queue (SHOP_JOBS).
	Jobs string
	// Schedule is the low-stock report's schedule: local or shared
	// (SHOP_SCHEDULE).
	Schedule string
	// Live is -live: local or redis; "" leaves the shop's default (redis
	// where the replicas share a Redis).
	Live string
}

// String is "store=redis lb=roundrobin lock=on", then the Redis keys when
// they differ from the default: "... redis=sentinel wait=1". With a
// profile it is the profile and what differs from it, as a "run with"
// line says it: "profile=stateful", "profile=stateless lock=off".
func (c Config) String() string {
	if c.Profile != "" {
		s := "profile=" + c.Profile
		preset := ConfigOf(Condition{"profile": c.Profile})
		for _, k := range configKeys {
			if v := *k.field(&c); k.name != "profile" && v != "" && v != *k.field(&preset) {
				s += " " + k.name + "=" + v
			}
		}
		return s
	}
	s := fmt.Sprintf("store=%s lb=%s lock=%s", c.Store, c.LB, c.Lock)
	if c.Redis != "" && c.Redis != DefaultConfig.Redis {
		s += " redis=" + c.Redis
	}
	if c.Wait != "" && c.Wait != DefaultConfig.Wait {
		s += " wait=" + c.Wait
	}
	if c.Cache != "" && c.Cache != DefaultConfig.Cache {
		s += " cache=" + c.Cache
	}
	if c.Uploads != "" && c.Uploads != DefaultConfig.Uploads {
		s += " uploads=" + c.Uploads
	}
	if c.Jobs != "" && c.Jobs != DefaultConfig.Jobs {
		s += " jobs=" + c.Jobs
	}
	if c.Schedule != "" && c.Schedule != DefaultConfig.Schedule {
		s += " schedule=" + c.Schedule
	}
	if c.Live != "" && c.Live != DefaultConfig.Live {
		s += " live=" + c.Live
	}
	return s
}

// Spelled is String with a profile's values spelled out, for the
// narrative and the report: "profile=stateful: store=memory lb=sticky
// lock=on ... live=local".
func (c Config) Spelled() string {
	if c.Profile == "" {
		return c.String()
	}
	var parts []string
	for _, k := range configKeys {
		if v := *k.field(&c); k.name != "profile" && v != "" {
			parts = append(parts, k.name+"="+v)
		}
	}
	return c.String() + ": " + strings.Join(parts, " ")
}

// DefaultConfig is what a "run with" line or a flag leaves unsaid, without
// a profile.
var DefaultConfig = Config{Store: "redis", LB: "roundrobin", Lock: "on", Redis: "single", Wait: "0", Cache: "off", Uploads: "disk", Jobs: "memory", Schedule: "local"}

// profiles are what each of the shop's profiles presets, in the lab's
// keys: every kind of state in the replica (stateful, behind sticky
// routing, as a stateful service must be) or outside it (stateless). The
// shop's own table is cmd/shop/profile.go; the replicas get -profile and
// only the keys a line sets otherwise.
var profiles = map[string]Condition{
	"stateful":  {"store": "memory", "lb": "sticky", "uploads": "disk", "jobs": "memory", "schedule": "local", "live": "local"},
	"stateless": {"store": "redis", "lb": "roundrobin", "uploads": "s3", "jobs": "queue", "schedule": "shared", "live": "redis"},
}

// ConfigOf is the configuration that pairs (checked with
// CheckConfigValue) describe: DefaultConfig, then the profile's presets
// when they name one, then every other pair, which wins over the profile
// as an explicit flag does in the shop.
func ConfigOf(pairs Condition) Config {
	cfg := DefaultConfig
	if p := pairs["profile"]; p != "" {
		cfg.Profile = p
		for k, v := range profiles[p] {
			cfg.set(k, v)
		}
	}
	for k, v := range pairs {
		cfg.set(k, v)
	}
	return cfg
}

// withDefaults fills the keys c leaves empty from its profile, then from
// DefaultConfig.
func (c Config) withDefaults() Config {
	base := ConfigOf(Condition{"profile": c.Profile})
	for _, k := range configKeys {
		if f := k.field(&c); *f == "" {
			*f = *k.field(&base)
		}
	}
	return c
}

// set sets one key's value.
func (c *Config) set(key, value string) {
	for _, k := range configKeys {
		if k.name == key {
			*k.field(c) = value
		}
	}
}

// configKey is one key of "run with" and "when": its allowed values and
// where it lives in a Config. A new store kind is one more value here.
type configKey struct {
	name   string
	values []string
	field  func(*Config) *string
}

// configKeys are the keys a configuration has, in the order they are
// written.
var configKeys = []configKey{
	{"profile", []string{"stateful", "stateless"}, func(c *Config) *string { return &c.Profile }},
	{"store", session.Kinds(), func(c *Config) *string { return &c.Store }},
	{"lb", []string{"roundrobin", "sticky", "noretry"}, func(c *Config) *string { return &c.LB }},
	{"lock", []string{"on", "off"}, func(c *Config) *string { return &c.Lock }},
	{"redis", []string{"single", "sentinel"}, func(c *Config) *string { return &c.Redis }},
	{"wait", []string{"0", "1"}, func(c *Config) *string { return &c.Wait }},
	{"cache", []string{"off", "on", "uninvalidated"}, func(c *Config) *string { return &c.Cache }},
	{"uploads", []string{"disk", "s3"}, func(c *Config) *string { return &c.Uploads }},
	{"jobs", []string{"memory", "queue"}, func(c *Config) *string { return &c.Jobs }},
	{"schedule", []string{"local", "shared"}, func(c *Config) *string { return &c.Schedule }},
	{"live", []string{"local", "redis"}, func(c *Config) *string { return &c.Live }},
}

// ConfigValues returns the values a configuration key allows, nil for an
// unknown key: the command line checks its flags against the same list.
func ConfigValues(key string) []string {
	for _, k := range configKeys {
		if k.name == key {
			return k.values
		}
	}
	return nil
}

// CheckConfigValue says what is wrong with key=value, in the words the
// script errors use: "lb=round-robin: want roundrobin, sticky or noretry".
func CheckConfigValue(key, value string) error {
	allowed := ConfigValues(key)
	if allowed == nil {
		var names []string
		for _, k := range configKeys {
			names = append(names, k.name)
		}
		return fmt.Errorf("unknown key %q: want %s", key, orList(names))
	}
	if !slices.Contains(allowed, value) {
		return fmt.Errorf("%s=%s: want %s", key, value, orList(allowed))
	}
	return nil
}

// orList is "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

func (c Config) get(key string) string {
	for _, k := range configKeys {
		if k.name == key {
			return *k.field(&c)
		}
	}
	return ""
}

// Condition is a "when" clause: every key must have its value.
type Condition map[string]string

// Holds reports whether c applies under cfg.
func (c Condition) Holds(cfg Config) bool {
	for k, v := range c {
		if cfg.get(k) != v {
			return false
		}
	}
	return true
}

// String is "store=memory lb=sticky" in the keys' order.
func (c Condition) String() string {
	var parts []string
	for _, k := range configKeys {
		if v, ok := c[k.name]; ok {
			parts = append(parts, k.name+"="+v)
		}
	}
	return strings.Join(parts, " ")
}

// Step is one line of a script: an action or an expectation. Which fields
// mean something depends on the form.
type Step struct {
	Line int       // 1-based line in the script
	Text string    // the line as written (blanks squeezed), for the narrative
	When Condition // the step runs only under a configuration where this holds
	form *stepForm

	N        int           // replicas to start, shoppers to load, items to add
	Product  int           // product id for add
	Tabs     int           // concurrent tabs for add (1 when not said)
	Times    int           // rounds per tab for add (1 when not said)
	Duration time.Duration // for load and sleep
	Shopper  string        // the shopper ("as NAME", "replica of NAME")
	Target   string        // a replica name or "redis"; "" with Shopper set means that shopper's replica
	Drain    Drain         // for stop and restart: the drain the script asked for
	Keys     []string      // for rekey: the names of the session keys, the sealing one first
	Note     string        // for add "with a note": the gift note each add sets on the line

	Expect *Expectation // for expectations
}

// Form is the step's form as its usage line: "load N shoppers for D".
func (s Step) Form() string {
	if s.form == nil {
		return ""
	}
	return s.form.Usage
}

// Drain is the drain a "stop" step asks for. The zero value asks for
// nothing: the replica drains for what it was started with.
type Drain struct {
	Set      bool
	Duration time.Duration // 0 with Set: "without drain"
}

// String is "with drain 2s", "without drain" or "".
func (d Drain) String() string {
	switch {
	case !d.Set:
		return ""
	case d.Duration == 0:
		return "without drain"
	}
	return "with drain " + d.Duration.String()
}

// parseState is what the parser knows at a line: the rules of order
// (start first, load before "wait for load") and the names in scope.
type parseState struct {
	line     int // the line being parsed
	started  bool
	loading  bool
	chaos    bool             // "chaos every D" runs
	replicas int              // shop1..shopN exist (started and added)
	drains   map[string]Drain // a replica's drain, fixed when it starts
	drainAt  map[string]int   // the line that set it
	shopped  map[string]bool  // shoppers that added something by then: "replica of NAME" exists
}

func newParseState() *parseState {
	return &parseState{drains: map[string]Drain{}, drainAt: map[string]int{}, shopped: map[string]bool{}}
}

// lineError is one script error: "PATH:LINE: what is wrong; did you mean ...".
type lineError struct {
	file string
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg) }

// Parse parses a script. file is its path, named in errors
// ("file:line: ..."); its base name without extension is the script's
// name. Parsing stops at the first error: a line after a broken one would
// only be judged against a guess, and a class needs one clear line.
func Parse(file, text string) (*Script, error) {
	s := &Script{File: file, Name: scriptName(file), Source: text}
	fail := func(line int, format string, args ...any) (*Script, error) {
		return nil, &lineError{file: file, line: line, msg: fmt.Sprintf(format, args...)}
	}
	ps := newParseState()
	lines := strings.Split(text, "\n")
	for i, raw := range lines {
		line := i + 1
		l := strings.TrimSpace(raw)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		l = strings.Join(strings.Fields(l), " ")

		// Header lines come before the first step.
		if rest, ok := cutWord(l, "lesson"); ok {
			switch {
			case len(s.Steps) > 0:
				return fail(line, "lesson must come before the first step")
			case s.Lesson != "":
				return fail(line, "second lesson line: a script teaches one lesson")
			case rest == "":
				return fail(line, `empty lesson; did you mean "lesson TEXT" (one line: what the scenario teaches)?`)
			}
			s.Lesson = rest
			continue
		}
		if rest, ok := cutWord(l, "run with"); ok {
			if len(s.Steps) > 0 {
				return fail(line, `"run with" must come before the first step`)
			}
			if rest == "" {
				return fail(line, `"run with" names no configuration; did you mean "run with store=redis lb=roundrobin"?`)
			}
			cond, err := parsePairs(strings.Fields(rest))
			if err != nil {
				return fail(line, "%v", err)
			}
			cfg := ConfigOf(cond)
			if slices.Contains(s.Configs, cfg) {
				return fail(line, "%s is already declared", cfg)
			}
			s.Configs = append(s.Configs, cfg)
			continue
		}

		ps.line = line
		st, err := parseLine(l, ps)
		if err != nil {
			return fail(line, "%v", err)
		}
		st.Line, st.Text = line, l
		if err := st.form.order(ps, &st); err != nil {
			return fail(line, "%v", err)
		}
		s.Steps = append(s.Steps, st)
	}
	last := len(lines)
	if strings.HasSuffix(text, "\n") {
		last--
	}
	switch {
	case s.Lesson == "":
		return fail(1, `no "lesson TEXT" line: say in one line what the scenario teaches`)
	case len(s.Configs) == 0:
		return fail(1, `no "run with KEY=VALUE ..." line: say which configurations the scenario applies to`)
	case !ps.started:
		return fail(1, `no "start N replicas" step`)
	case ps.loading:
		return fail(last, `load is still running at the end; did you mean to end with "wait for load"?`)
	case ps.chaos:
		return fail(last, `chaos is still running at the end; did you mean "stop chaos" before the expectations?`)
	case !slices.ContainsFunc(s.Steps, func(st Step) bool { return st.Expect != nil }):
		return fail(last, `no "expect ..." line: a scenario without one cannot fail`)
	}
	return s, nil
}

// cutWord cuts a leading keyword off a line: "lesson x" → "x", true.
func cutWord(l, word string) (string, bool) {
	if l == word {
		return "", true
	}
	rest, ok := strings.CutPrefix(l, word+" ")
	return rest, ok
}

func scriptName(file string) string {
	name := file
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	return strings.TrimSuffix(name, ".txt")
}

// parseLine parses one step or expectation line, "when" clause included.
func parseLine(l string, ps *parseState) (Step, error) {
	body, cond, err := cutWhen(l)
	if err != nil {
		return Step{}, err
	}
	if rest, ok := cutWord(body, "expect"); ok {
		e, err := parseExpectation(rest)
		if err != nil {
			return Step{}, err
		}
		return Step{form: expectStep, Expect: e, When: cond}, nil
	}
	for _, f := range steps {
		m := f.Pattern.FindStringSubmatch(body)
		if m == nil {
			continue
		}
		st := Step{form: f, When: cond}
		if cond != nil && f.NoWhen {
			return Step{}, fmt.Errorf("%q cannot take a when clause: it shapes the whole run", f.Usage)
		}
		if f.Parse != nil {
			if err := f.Parse(m, &st, ps); err != nil {
				return Step{}, err
			}
		}
		return st, nil
	}
	return Step{}, unknownLine("step", "", body, stepCandidates())
}

// cutWhen splits "X when K=V ..." into X and its condition.
func cutWhen(l string) (string, Condition, error) {
	body, cond, ok := strings.Cut(l, " when ")
	if !ok {
		if b, ok := strings.CutSuffix(l, " when"); ok {
			return "", nil, fmt.Errorf(`"when" without a condition; did you mean "%s when store=redis"?`, b)
		}
		return l, nil, nil
	}
	c, err := parsePairs(strings.Fields(cond))
	if err != nil {
		return "", nil, err
	}
	return body, c, nil
}

// parsePairs parses KEY=VALUE words for "run with" and "when".
func parsePairs(words []string) (Condition, error) {
	c := Condition{}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not KEY=VALUE; did you mean %q?", w, closestPair(w))
		}
		if err := CheckConfigValue(k, v); err != nil {
			return nil, err
		}
		if _, dup := c[k]; dup {
			return nil, fmt.Errorf("%s given twice", k)
		}
		c[k] = v
	}
	return c, nil
}

// closestPair turns a bare value into the pair it belongs to: "redis" →
// "store=redis".
func closestPair(w string) string {
	best, bestD := "", -1
	for _, k := range configKeys {
		for _, v := range k.values {
			if d := distance(w, v); bestD < 0 || d < bestD {
				best, bestD = k.name+"="+v, d
			}
		}
	}
	return best
}

// maxDuration bounds every duration a script gives: a lab run is a lesson
// of seconds, not a soak test.
const maxDuration = time.Minute

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not a duration; did you mean one like 800ms or 2s (at most 1m)?", s)
	case d <= 0:
		return 0, fmt.Errorf("%q: a duration must be more than 0, like 800ms or 2s", s)
	case d > maxDuration:
		return 0, fmt.Errorf("%s is over the maximum of 1m: a lab run is a lesson of seconds", s)
	}
	return d, nil
}

// catalogSize is how many products every cluster the lab starts has: the
// shop seeds products 1 to 24 into an empty database (store/migrate.go).
const catalogSize = 24

// product parses a product id the catalog has.
func product(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("product %q: want a number from 1 to %d", s, catalogSize)
	}
	if n < 1 || n > catalogSize {
		return 0, fmt.Errorf("product %d: the catalog has products 1 to %d", n, catalogSize)
	}
	return n, nil
}

// candidate is a form a line may have meant: its usage and an example,
// and with also a phrase people write for it ("scale to N replicas" for
// "add replica"), compared instead of the usage.
type candidate struct{ usage, example, also string }

// unknownLine says a line matches no form and names the closest one. A
// prefix ("expect ") common to the line and every candidate is left out
// of the comparison and put back in the message.
func unknownLine(what, prefix, line string, cands []candidate) error {
	word, _, _ := strings.Cut(line, " ")
	var same []candidate // forms that start with the line's first word
	for _, c := range cands {
		if w, _, _ := strings.Cut(c.usage, " "); w == word && c.also == "" {
			same = append(same, c)
		}
	}
	pool, msg := cands, fmt.Sprintf("unknown %s %q", what, prefix+line)
	if len(same) > 0 && prefix == "" {
		pool, msg = same, fmt.Sprintf("%q does not fit any %q form", prefix+line, prefix+word)
	}
	best, bestD := candidate{}, -1
	for _, c := range pool {
		d := min(distance(line, c.usage), distance(line, strings.TrimPrefix(c.example, prefix)))
		if c.also != "" {
			d = min(distance(line, c.also), distance(line, alsoExample(c.also, line)))
		}
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if best.usage == "" {
		return errors.New(msg)
	}
	if best.example != prefix+best.usage {
		return fmt.Errorf("%s; did you mean %q (e.g. %q)?", msg, prefix+best.usage, best.example)
	}
	return fmt.Errorf("%s; did you mean %q?", msg, prefix+best.usage)
}

// alsoExample puts the line's numbers into a phrase's placeholders, so
// "scale to 5 replicas" is as close to "scale to N replicas" as it looks.
func alsoExample(also, line string) string {
	var nums []string
	for _, w := range strings.Fields(line) {
		if _, err := strconv.Atoi(w); err == nil {
			nums = append(nums, w)
		}
	}
	words := strings.Fields(also)
	for i, w := range words {
		if (w == "N" || w == "D") && len(nums) > 0 {
			words[i], nums = nums[0], nums[1:]
		}
	}
	return strings.Join(words, " ")
}

// distance is the Levenshtein distance between two strings, in bytes
// (scripts are ASCII).
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
