package lab

// The scenario script language, in the spirit of golang/website's
// internal/webtest: one small plain-text file per scenario that a workshop
// can read aloud. A script is a header (lesson and the configurations it
// applies to) followed by steps, one per line:
//
//	# failover: comments start with #.
//	lesson kill -9 the replica holding the sessions while people shop
//	run with store=memory lb=sticky
//	run with store=redis lb=roundrobin
//
//	start 3 replicas
//	as alice add 2 of product 1
//	as alice add 1 of product 2 in 8 tabs 5 times
//	load 6 shoppers for 2s
//	sleep 800ms
//	kill -9 replica of alice
//	stop shop2 | start shop2 | restart shop2
//	stop redis | start redis | restart redis | kill -9 redis
//	add replica
//	remove replica shop4
//	wait for load
//	expect carts intact when store=redis
//
// Expectations (evaluated where they stand, against a fresh look at every
// shopper's cart; consecutive expectations share one look):
//
//	expect carts intact          every shopper's cart is what it put in
//	expect lost carts            at least one cart is gone
//	expect lost updates          at least one cart holds fewer items than were added
//	expect cart of NAME is N     every read of NAME's cart counts N items
//	expect cart of NAME is intact|lost|wrong
//	expect traffic on shop4      shop4 served at least one request
//	expect no failed requests    no shopper gave up on a request after its retries
//	expect failed requests       at least one did
//	expect status 503            at least one response had that status
//	expect no status 500         none had it
//
// Any expectation may end in "when KEY=VALUE ..." (keys store, lb, lock; all
// must hold): it applies only under that configuration.

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/statelab/shop/session"
)

// Script is a parsed scenario.
type Script struct {
	Name    string   // from the file name: "failover"
	File    string   // for messages: "scripts/failover.txt"
	Lesson  string   // one line: what the scenario teaches
	Configs []Config // the configurations it applies to, from "run with" lines
	Steps   []Step
}

// Config is one cluster configuration a scenario runs under.
type Config struct {
	Store string // memory or redis
	LB    string // roundrobin or sticky
	Lock  string // on or off
}

// String is "store=redis lb=roundrobin lock=on".
func (c Config) String() string {
	return fmt.Sprintf("store=%s lb=%s lock=%s", c.Store, c.LB, c.Lock)
}

func (c Config) get(key string) string {
	switch key {
	case "store":
		return c.Store
	case "lb":
		return c.LB
	case "lock":
		return c.Lock
	}
	return ""
}

// DefaultConfig is what a "run with" line or a flag leaves unsaid.
var DefaultConfig = Config{Store: "redis", LB: "roundrobin", Lock: "on"}

// configValues are the values each configuration key allows.
var configValues = map[string][]string{
	"store": session.Kinds(),
	"lb":    {"roundrobin", "sticky"},
	"lock":  {"on", "off"},
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

// Step is one line of a script: an action or an expectation.
type Step struct {
	Line int    // 1-based line in the script
	Text string // the line as written, for the narrative
	Kind string // see the kind constants

	N        int           // replicas to start, shoppers to load, items to add
	Product  int           // product id for add
	Tabs     int           // concurrent tabs for add (1 when not said)
	Times    int           // rounds per tab for add (1 when not said)
	Duration time.Duration // for load and sleep
	Shopper  string        // the shopper ("as NAME", "replica of NAME", "cart of NAME")
	Target   string        // a replica name or "redis"; "" with Shopper set means that shopper's replica

	Expect *Expectation // for kind "expect"
}

// Step kinds.
const (
	kindStart     = "start"     // start N replicas
	kindAdd       = "add"       // as NAME add Q of product P [in T tabs] [R times]
	kindLoad      = "load"      // load N shoppers for D (in the background)
	kindWaitLoad  = "wait-load" // wait for load
	kindSleep     = "sleep"     // sleep D
	kindKill      = "kill"      // kill -9 TARGET
	kindStop      = "stop"      // stop TARGET (SIGTERM; replicas drain)
	kindStartOne  = "start-one" // start TARGET again
	kindRestart   = "restart"   // restart TARGET
	kindAddRep    = "add-replica"
	kindRemoveRep = "remove-replica"
	kindExpect    = "expect"
)

// Expectation is one "expect" line.
type Expectation struct {
	What    string // see the expect constants
	Shopper string // for cart-of
	Replica string // for traffic
	Count   int    // for cart-is-count
	Verdict string // for cart-is-verdict: intact, lost or wrong
	Status  int    // for status and no-status
	When    Condition
}

// Expectation kinds.
const (
	expectIntact      = "carts intact"
	expectLost        = "lost carts"
	expectLostUpdates = "lost updates"
	expectCartCount   = "cart count"
	expectCartVerdict = "cart verdict"
	expectTraffic     = "traffic"
	expectNoFailed    = "no failed requests"
	expectFailed      = "failed requests"
	expectStatus      = "status"
	expectNoStatus    = "no status"
)

// The step grammar, one pattern per line form. Names are lower-case words.
var (
	reLesson  = regexp.MustCompile(`^lesson\s+(.+)$`)
	reRunWith = regexp.MustCompile(`^run with((?:\s+\w+=\w+)+)$`)
	reStartN  = regexp.MustCompile(`^start (\d+) replicas?$`)
	reAdd     = regexp.MustCompile(`^as ([a-z][a-z0-9]*) add (\d+) of product (\d+)(?: in (\d+) tabs)?(?: (\d+) times)?$`)
	reLoad    = regexp.MustCompile(`^load (\d+) shoppers? for (\S+)$`)
	reSleep   = regexp.MustCompile(`^sleep (\S+)$`)
	reFault   = regexp.MustCompile(`^(kill -9|stop|start|restart) (.+)$`)
	reTarget  = regexp.MustCompile(`^(?:(shop\d+)|(redis)|replica of ([a-z][a-z0-9]*))$`)
	reRemove  = regexp.MustCompile(`^remove replica (shop\d+)$`)
	reCartIs  = regexp.MustCompile(`^cart of ([a-z][a-z0-9]*) is (\d+|intact|lost|wrong)$`)
	reTraffic = regexp.MustCompile(`^traffic on (shop\d+)$`)
	reStatus  = regexp.MustCompile(`^(no )?status (\d{3})$`)
)

// stepForms is what the parser says it expected when a line matches nothing.
const stepForms = `a step ("start N replicas", "as NAME add Q of product P [in T tabs] [R times]", ` +
	`"load N shoppers for D", "sleep D", "wait for load", "kill -9|stop|start|restart shopN|redis|replica of NAME", ` +
	`"add replica", "remove replica shopN", "expect ...")`

// Parse parses a script. file names it in errors ("file:line: ...") and its
// base name without extension is the script's name.
func Parse(file, text string) (*Script, error) {
	s := &Script{File: file, Name: scriptName(file)}
	var errs []string
	errorf := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s:%d: %s", file, line, fmt.Sprintf(format, args...)))
	}
	started, loading := false, false
	for i, raw := range strings.Split(text, "\n") {
		line := i + 1
		l := strings.TrimSpace(raw)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		l = strings.Join(strings.Fields(l), " ")

		// Header lines come before the first step.
		if m := reLesson.FindStringSubmatch(l); m != nil {
			if len(s.Steps) > 0 {
				errorf(line, "lesson must come before the first step")
			} else if s.Lesson != "" {
				errorf(line, "second lesson line: a script teaches one lesson")
			}
			s.Lesson = m[1]
			continue
		}
		if strings.HasPrefix(l, "run with") {
			if len(s.Steps) > 0 {
				errorf(line, `"run with" must come before the first step`)
				continue
			}
			m := reRunWith.FindStringSubmatch(l)
			if m == nil {
				errorf(line, `expected "run with KEY=VALUE ..." (keys store, lb, lock), got %q`, l)
				continue
			}
			cond, err := parsePairs(strings.Fields(m[1]))
			if err != nil {
				errorf(line, "%v", err)
				continue
			}
			cfg := DefaultConfig
			for k, v := range cond {
				switch k {
				case "store":
					cfg.Store = v
				case "lb":
					cfg.LB = v
				case "lock":
					cfg.Lock = v
				}
			}
			s.Configs = append(s.Configs, cfg)
			continue
		}

		st, err := parseStep(l)
		if err != nil {
			errorf(line, "%v", err)
			continue
		}
		st.Line, st.Text = line, l
		switch st.Kind {
		case kindStart:
			if started {
				errorf(line, "the cluster is already started (one \"start N replicas\" per script)")
			}
			started = true
		case kindLoad:
			if loading {
				errorf(line, `load is already running: "wait for load" first`)
			}
			loading = true
		case kindWaitLoad:
			if !loading {
				errorf(line, `"wait for load" without a "load" before it`)
			}
			loading = false
		case kindExpect:
			if loading {
				errorf(line, `expected "wait for load" before an expectation: carts are judged while nobody shops`)
			}
		default:
			if !started {
				errorf(line, `expected "start N replicas" before %q`, l)
			}
		}
		s.Steps = append(s.Steps, st)
	}
	if s.Lesson == "" {
		errorf(1, `expected a "lesson ..." line`)
	}
	if len(s.Configs) == 0 {
		errorf(1, `expected at least one "run with KEY=VALUE ..." line`)
	}
	if !started {
		errorf(1, `expected a "start N replicas" step`)
	}
	if !slices.ContainsFunc(s.Steps, func(st Step) bool { return st.Kind == kindExpect }) {
		errorf(1, `expected at least one "expect ..." line: a scenario without one cannot fail`)
	}
	if loading {
		errorf(len(strings.Split(text, "\n")), `expected "wait for load" before the end: load is still running`)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return s, nil
}

func scriptName(file string) string {
	name := file
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return strings.TrimSuffix(name, ".txt")
}

// parseStep parses one step line (without comments and extra blanks).
func parseStep(l string) (Step, error) {
	switch {
	case l == "wait for load":
		return Step{Kind: kindWaitLoad}, nil
	case l == "add replica":
		return Step{Kind: kindAddRep}, nil
	case strings.HasPrefix(l, "expect "):
		e, err := parseExpect(strings.TrimPrefix(l, "expect "))
		if err != nil {
			return Step{}, err
		}
		return Step{Kind: kindExpect, Expect: e}, nil
	}
	if m := reStartN.FindStringSubmatch(l); m != nil {
		n := atoi(m[1])
		if n < 1 || n > 9 {
			return Step{}, fmt.Errorf("start %d replicas: expected 1 to 9 replicas", n)
		}
		return Step{Kind: kindStart, N: n}, nil
	}
	if m := reAdd.FindStringSubmatch(l); m != nil {
		st := Step{Kind: kindAdd, Shopper: m[1], N: atoi(m[2]), Product: atoi(m[3]), Tabs: 1, Times: 1}
		if m[4] != "" {
			st.Tabs = atoi(m[4])
		}
		if m[5] != "" {
			st.Times = atoi(m[5])
		}
		switch {
		case st.N < 1 || st.N > 99:
			return Step{}, fmt.Errorf("add %d: expected a quantity from 1 to 99", st.N)
		case st.Product < 1:
			return Step{}, fmt.Errorf("product %d: expected a product id from 1", st.Product)
		case st.Tabs < 1 || st.Tabs > 32:
			return Step{}, fmt.Errorf("%d tabs: expected 1 to 32", st.Tabs)
		case st.Times < 1 || st.Times > 100:
			return Step{}, fmt.Errorf("%d times: expected 1 to 100", st.Times)
		}
		return st, nil
	}
	if strings.HasPrefix(l, "as ") {
		return Step{}, fmt.Errorf(`expected "as NAME add Q of product P [in T tabs] [R times]", got %q`, l)
	}
	if m := reLoad.FindStringSubmatch(l); m != nil {
		d, err := parseDuration(m[2])
		if err != nil {
			return Step{}, err
		}
		n := atoi(m[1])
		if n < 1 || n > 200 {
			return Step{}, fmt.Errorf("load %d shoppers: expected 1 to 200", n)
		}
		return Step{Kind: kindLoad, N: n, Duration: d}, nil
	}
	if strings.HasPrefix(l, "load ") {
		return Step{}, fmt.Errorf(`expected "load N shoppers for DURATION", got %q`, l)
	}
	if m := reSleep.FindStringSubmatch(l); m != nil {
		d, err := parseDuration(m[1])
		if err != nil {
			return Step{}, err
		}
		return Step{Kind: kindSleep, Duration: d}, nil
	}
	if m := reRemove.FindStringSubmatch(l); m != nil {
		return Step{Kind: kindRemoveRep, Target: m[1]}, nil
	}
	if m := reFault.FindStringSubmatch(l); m != nil {
		t := reTarget.FindStringSubmatch(m[2])
		if t == nil {
			return Step{}, fmt.Errorf(`expected "shopN", "redis" or "replica of NAME" after %q, got %q`, m[1], m[2])
		}
		st := Step{Target: t[1] + t[2], Shopper: t[3]}
		st.Kind = map[string]string{"kill -9": kindKill, "stop": kindStop, "start": kindStartOne, "restart": kindRestart}[m[1]]
		return st, nil
	}
	if strings.HasPrefix(l, "kill ") {
		return Step{}, fmt.Errorf(`expected "kill -9 TARGET" (a crash; for SIGTERM write "stop TARGET"), got %q`, l)
	}
	return Step{}, fmt.Errorf("expected %s, got %q", stepForms, l)
}

// parseExpect parses what follows "expect ".
func parseExpect(rest string) (*Expectation, error) {
	e := &Expectation{}
	if what, cond, ok := strings.Cut(rest, " when "); ok {
		if strings.TrimSpace(cond) == "" {
			return nil, fmt.Errorf(`expected KEY=VALUE after "when"`)
		}
		c, err := parsePairs(strings.Fields(cond))
		if err != nil {
			return nil, err
		}
		e.When = c
		rest = what
	} else if strings.HasSuffix(rest, " when") {
		return nil, fmt.Errorf(`expected KEY=VALUE after "when"`)
	}
	switch rest {
	case "carts intact":
		e.What = expectIntact
	case "lost carts":
		e.What = expectLost
	case "lost updates":
		e.What = expectLostUpdates
	case "no failed requests":
		e.What = expectNoFailed
	case "failed requests":
		e.What = expectFailed
	default:
		if m := reCartIs.FindStringSubmatch(rest); m != nil {
			e.Shopper = m[1]
			if n, err := strconv.Atoi(m[2]); err == nil {
				e.What, e.Count = expectCartCount, n
			} else {
				e.What, e.Verdict = expectCartVerdict, m[2]
			}
		} else if m := reTraffic.FindStringSubmatch(rest); m != nil {
			e.What, e.Replica = expectTraffic, m[1]
		} else if m := reStatus.FindStringSubmatch(rest); m != nil {
			e.What, e.Status = expectStatus, atoi(m[2])
			if m[1] != "" {
				e.What = expectNoStatus
			}
		} else {
			return nil, fmt.Errorf(`expected "expect carts intact|lost carts|lost updates|cart of NAME is N|intact|lost|wrong|traffic on shopN|[no] failed requests|[no] status NNN [when KEY=VALUE ...]", got "expect %s"`, rest)
		}
	}
	return e, nil
}

// parsePairs parses KEY=VALUE words for "run with" and "when".
func parsePairs(words []string) (Condition, error) {
	c := Condition{}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		allowed, known := configValues[k]
		switch {
		case !ok:
			return nil, fmt.Errorf("expected KEY=VALUE, got %q", w)
		case !known:
			return nil, fmt.Errorf("unknown key %q: expected store, lb or lock", k)
		case !slices.Contains(allowed, v):
			return nil, fmt.Errorf("%s=%s: expected %s=%s", k, v, k, strings.Join(allowed, "|"))
		case c[k] != "":
			return nil, fmt.Errorf("%s given twice", k)
		}
		c[k] = v
	}
	return c, nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > time.Minute {
		return 0, fmt.Errorf("expected a duration like 800ms or 2s (at most 1m), got %q", s)
	}
	return d, nil
}

// atoi is strconv.Atoi for strings the grammar already holds to digits.
func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
