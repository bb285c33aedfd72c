package lab

// The step table: every form a step line can take, one entry each, in the
// manner of testscript's command table and toxiproxy's toxic registry. An
// entry holds the form as the docs write it, one sentence of help, an
// example (docs/scenarios.md and the tests parse it), the pattern, how the
// match becomes a Step, how the step runs, and for a fault how the local
// cluster does it. A new step or fault is one entry here (and, for a fault,
// one harness method in scenarios/cluster).

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/statelab/shop/scenarios/cluster"
)

// stepForm is one entry of the step table.
type stepForm struct {
	Usage   string         // the form: literal words, placeholders in capitals
	Help    string         // one or two sentences: what it does and why
	Example string         // a line of this form that parses
	Pattern *regexp.Regexp // matches the line without its "when" clause
	NoWhen  bool           // the step shapes the whole run: no "when"
	// Parse fills the step from the pattern's match; nil when the form
	// has nothing to parse.
	Parse func(m []string, st *Step, ps *parseState) error
	// Order checks the step's place among the others and records what it
	// changes; nil means it needs a started cluster.
	Order func(ps *parseState, st *Step) error
	Run   func(ctx context.Context, r *runner, st *Step) error

	// For faults: the verb a Driver receives, and what the local cluster
	// harness does for it (LocalDriver.Fault looks the verb up here).
	Verb  string
	Local func(ctx context.Context, d *LocalDriver, f Fault) error
	// Uses, for a step made of other faults (restart), are their verbs.
	Uses []string
	// Needs is what the step needs of the cluster beyond replicas, nginx
	// and the store, declared by the step itself (toxiproxy-style): the run
	// asks the driver for it when any step of the script needs it.
	Needs Needs
	// Also are phrases people write when they mean this form ("scale to N
	// replicas"): an unknown line close to one is pointed here.
	Also []string
}

// Needs is what a step needs the cluster to have.
type Needs struct {
	// RedisProxy: the step cuts or slows the link to Redis, so the
	// replicas must reach Redis through a proxy the lab controls.
	RedisProxy bool
}

// add merges what another step needs.
func (n *Needs) add(o Needs) {
	n.RedisProxy = n.RedisProxy || o.RedisProxy
}

// verbs are the faults a step of this form asks of a driver.
func (f *stepForm) verbs() []string {
	if f.Verb != "" {
		return []string{f.Verb}
	}
	return f.Uses
}

func (f *stepForm) order(ps *parseState, st *Step) error {
	if f.Order != nil {
		return f.Order(ps, st)
	}
	if !ps.started {
		return fmt.Errorf(`%q before "start N replicas": the cluster must be started first`, st.Text)
	}
	return nil
}

// Placeholders in the forms: N, Q, P, T, R numbers; D a duration like 800ms;
// NAME a shopper (lower-case letters and digits); TARGET shopN, redis or
// "replica of NAME".
const (
	reName   = `([a-z][a-z0-9]*)`
	reTarget = `(.+)` // parseTarget says what is wrong with it
)

// steps is the step table, in the order docs/scenarios.md lists it.
var steps = []*stepForm{
	{
		Usage:   "start N replicas",
		Help:    "Starts Redis (when the store needs it), N replicas shop1..shopN and nginx in front of them under the run's configuration. The clock starts when nginx serves. One per script, before every other step.",
		Example: "start 3 replicas",
		Pattern: regexp.MustCompile(`^start (\S+) replicas?$`),
		NoWhen:  true,
		Parse: func(m []string, st *Step, _ *parseState) error {
			n, err := count(m[1], "replicas", 1, 9)
			st.N = n
			return err
		},
		Order: func(ps *parseState, st *Step) error {
			if ps.started {
				return errors.New(`the cluster is already started: one "start N replicas" per script`)
			}
			ps.started, ps.replicas = true, st.N
			return nil
		},
		Run: func(ctx context.Context, r *runner, st *Step) error { return r.start(ctx, st.N) },
	},
	{
		Usage:   "as NAME add Q of product P [with a note] [in T tabs] [R times]",
		Help:    "The shopper NAME (a browser with its own cookie jar) opens the catalog once, then adds Q of product P to its cart, retrying a failed request (no answer or 5xx) up to three times. With a note, the add sets the line's gift note, 140 characters kept in the session (what takes a sealed cookie past 4 KB). With tabs, T tabs of the same browser add at once, R times each: T×R writes racing for one session.",
		Example: "as alice add 2 of product 1",
		Pattern: regexp.MustCompile(`^as (\S+) add (\S+) of product (\S+)( with a note)?(?: in (\S+) tabs?)?(?: (\S+) times?)?$`),
		Parse: func(m []string, st *Step, ps *parseState) error {
			if !regexp.MustCompile(`^` + reName + `$`).MatchString(m[1]) {
				return fmt.Errorf("shopper name %q: want lower-case letters and digits, starting with a letter", m[1])
			}
			st.Shopper, st.Tabs, st.Times = m[1], 1, 1
			var err error
			if st.N, err = count(m[2], "quantity", 1, 99); err != nil {
				return err
			}
			if st.Product, err = product(m[3]); err != nil {
				return err
			}
			if m[4] != "" {
				st.Note = giftNote(st.Shopper, st.Product)
			}
			if m[5] != "" {
				if st.Tabs, err = count(m[5], "tabs", 1, 32); err != nil {
					return err
				}
			}
			if m[6] != "" {
				if st.Times, err = count(m[6], "times", 1, 100); err != nil {
					return err
				}
			}
			ps.shopped[st.Shopper] = true
			return nil
		},
		Run: func(ctx context.Context, r *runner, st *Step) error { return r.add(ctx, st) },
	},
	{
		Usage:   "as NAME peek R times",
		Help:    "Another device of the shopper NAME, holding only the session token and not the version of the last write, reads the cart R times through the load balancer (GET /api/session). A read that shows fewer items than NAME's acknowledged adds is a stale read: what a near-cache without invalidation serves.",
		Example: "as alice peek 6 times",
		Pattern: regexp.MustCompile(`^as (\S+) peek (\S+) times?$`),
		Parse: func(m []string, st *Step, _ *parseState) (err error) {
			if !regexp.MustCompile(`^` + reName + `$`).MatchString(m[1]) {
				return fmt.Errorf("shopper name %q: want lower-case letters and digits, starting with a letter", m[1])
			}
			st.Shopper = m[1]
			st.Times, err = count(m[2], "times", 1, 100)
			return err
		},
		Run: func(ctx context.Context, r *runner, st *Step) error { return r.peek(ctx, st) },
	},
	{
		Usage:   "as NAME review product P with a photo",
		Help:    "The shopper NAME posts a review of product P with a small PNG photo through the load balancer (one try: its answer must be a 303) and finds the photo's key on the product page. The replica that answered takes the photo: \"replica of NAME\" names it from then on.",
		Example: "as alice review product 3 with a photo",
		Pattern: regexp.MustCompile(`^as (\S+) review product (\S+) with a photo$`),
		Parse: func(m []string, st *Step, ps *parseState) error {
			err := parseShopper(func(m []string, st *Step) (err error) {
				st.Product, err = count(m[2], "product", 1, 1000)
				return err
			})(m, st, ps)
			// The replica that took the photo is "replica of NAME" now.
			if err == nil {
				ps.shopped[st.Shopper] = true
			}
			return err
		},
		Run: func(ctx context.Context, r *runner, st *Step) error {
			return r.shopper(st.Shopper).review(ctx, st.Product)
		},
	},
	{
		Usage:   "as NAME log in",
		Help:    "The shopper NAME logs in to its account (NAME@lab.example): the first time it registers it (POST /register), later it logs in (POST /login). Either renews the session token, and the account's saved cart is merged into the browser's.",
		Example: "as alice log in",
		Pattern: regexp.MustCompile(`^as (\S+) log ?in$`),
		Also:    []string{"as NAME login", "as NAME sign in", "as NAME register"},
		Parse:   parseShopper(nil),
		Run:     func(ctx context.Context, r *runner, st *Step) error { return r.logIn(ctx, st) },
	},
	{
		Usage:   "as NAME log out",
		Help:    "The shopper NAME logs out (POST /logout): the token is renewed and the session emptied; the cart stays with the account and comes back at the next log in.",
		Example: "as alice log out",
		Pattern: regexp.MustCompile(`^as (\S+) log ?out$`),
		Also:    []string{"as NAME logout", "as NAME sign out"},
		Parse:   parseShopper(nil),
		Run:     func(ctx context.Context, r *runner, st *Step) error { return r.logOut(ctx, st) },
	},
	{
		Usage:   "as NAME check out",
		Help:    "The shopper NAME places an order for its cart (POST /checkout with a fresh idempotency key, retried with the same key on no answer or a 5xx). A placed order empties the cart.",
		Example: "as alice check out",
		Pattern: regexp.MustCompile(`^as (\S+) check ?out$`),
		Also:    []string{"as NAME checkout", "as NAME buy", "as NAME order"},
		Parse:   parseShopper(nil),
		Run:     func(ctx context.Context, r *runner, st *Step) error { return r.checkOut(ctx, st) },
	},
	{
		Usage: "as NAME watch stock",
		Help: "The shopper NAME opens a tab that keeps GET /events open through the load balancer, as EventSource does: when the stream ends (the replica drained or died) it reconnects after the retry hint, with the id of the last event it got as Last-Event-ID, to whichever replica nginx picks. " +
			"From then on, every product whose stock a lab checkout changes is owed to it as one stock event. \"replica of NAME\" is then the replica holding its stream.",
		Example: "as bob watch stock",
		Pattern: regexp.MustCompile(`^as (\S+) watch(?:es)? stock$`),
		Also:    []string{"as NAME watch", "as NAME open events", "as NAME listen"},
		Parse: func(m []string, st *Step, ps *parseState) error {
			if err := parseShopper(nil)(m, st, ps); err != nil {
				return err
			}
			ps.shopped[st.Shopper] = true // "replica of NAME": its stream's
			return nil
		},
		Run: func(ctx context.Context, r *runner, st *Step) error { return r.watch(ctx, st) },
	},
	{
		Usage: "as NAME guess N passwords",
		Help: "A login burst: N wrong passwords for NAME's account (NAME@lab.example, whether or not it exists) through the load balancer, one after the other, from one client address. " +
			"The shop checks at most 5 per account and address in 5 minutes and answers 429 after that, but where it counts is the lesson: a limiter in each replica's memory counts alone, so round robin over three replicas checks 15.",
		Example: "as mallory guess 30 passwords",
		Pattern: regexp.MustCompile(`^as (\S+) guess (\S+) (?:wrong )?passwords?$`),
		Also:    []string{"as NAME try N wrong passwords", "as NAME login burst N", "as NAME brute force N passwords"},
		Parse: parseShopper(func(m []string, st *Step) (err error) {
			st.N, err = count(m[2], "passwords", 1, 200)
			return err
		}),
		Run: func(ctx context.Context, r *runner, st *Step) error { return r.guess(ctx, st) },
	},
	{
		Usage:   "load N shoppers for D",
		Help:    "N more shoppers (shopper01, shopper02, ...) shop in the background for D: each adds a random product every 20 to 60 ms. The next steps run while they shop; \"wait for load\" waits for them.",
		Example: "load 6 shoppers for 2s",
		Pattern: regexp.MustCompile(`^load (\S+) shoppers? for (\S+)$`),
		NoWhen:  true,
		Parse:   parseLoad("shoppers", 200),
		Order:   startLoad,
		Run: func(ctx context.Context, r *runner, st *Step) error {
			r.startLoad(ctx, st.N, st.Duration)
			return nil
		},
	},
	{
		Usage:   "wait for load",
		Help:    "Waits until the background shoppers have finished. Expectations judge carts while nobody shops, so a load must be waited for before the next expectation and before the end.",
		Example: "wait for load",
		Pattern: regexp.MustCompile(`^wait for load$`),
		NoWhen:  true,
		Order: func(ps *parseState, st *Step) error {
			if !ps.loading {
				return errors.New(`"wait for load" without a "load N shoppers for D" before it`)
			}
			ps.loading = false
			return nil
		},
		Run: func(ctx context.Context, r *runner, st *Step) error {
			r.waitLoad()
			return nil
		},
	},
	{
		Usage:   "load N buyers for D",
		Help:    "N buyers (buyer01, buyer02, ...) do everything in the background for D: open the catalog, add one to three products, check out (one idempotency key for every retry of a checkout), and again. Their orders' receipts are judged by the receipt expectations, their checkouts' stock changes by the event ones; \"wait for load\" waits for them.",
		Example: "load 4 buyers for 6s",
		Pattern: regexp.MustCompile(`^load (\S+) buyers? for (\S+)$`),
		NoWhen:  true,
		Parse:   parseLoad("buyers", 99),
		Order:   startLoad,
		Run: func(ctx context.Context, r *runner, st *Step) error {
			r.startBuyers(ctx, st.N, st.Duration)
			return nil
		},
	},
	{
		Usage: "chaos every D",
		Help: "The seeds' last test, in the background: every D a random replica (of those started so far; each once in every round of as many kills) dies by kill -9 and is started again at once with an empty memory and an empty upload folder, like a new container. " +
			"The next steps run while it goes on; \"stop chaos\" ends it once the replica it is killing serves again. D is at least 500ms.",
		Example: "chaos every 2s",
		Pattern: regexp.MustCompile(`^chaos every (\S+)$`),
		NoWhen:  true,
		Also:    []string{"kill a random replica every D", "chaos monkey", "kill random replicas"},
		Parse: func(m []string, st *Step, _ *parseState) (err error) {
			st.Duration, err = parseDuration(m[1])
			if err == nil && st.Duration < 500*time.Millisecond {
				err = fmt.Errorf("chaos every %s: want at least 500ms, or a replica never gets to serve", m[1])
			}
			return err
		},
		Order: func(ps *parseState, st *Step) error {
			if !ps.started {
				return errors.New(`chaos before "start N replicas": the cluster must be started first`)
			}
			if ps.chaos {
				return errors.New(`chaos is already running; did you mean "stop chaos" first?`)
			}
			ps.chaos, st.N = true, ps.replicas
			return nil
		},
		Run: func(ctx context.Context, r *runner, st *Step) error {
			r.startChaos(ctx, st.N, st.Duration)
			return nil
		},
		Uses: []string{"replace"},
	},
	{
		Usage:   "stop chaos",
		Help:    "Ends \"chaos every D\" after the replica it is killing, if any, serves again. Expectations judge a cluster at rest: stop chaos before them.",
		Example: "stop chaos",
		Pattern: regexp.MustCompile(`^stop chaos$`),
		NoWhen:  true,
		Order: func(ps *parseState, st *Step) error {
			if !ps.chaos {
				return errors.New(`"stop chaos" without a "chaos every D" before it`)
			}
			ps.chaos = false
			return nil
		},
		Run: func(ctx context.Context, r *runner, st *Step) error { return r.stopChaos() },
	},
	{
		Usage:   "sleep D",
		Help:    "Does nothing for D while the load goes on: gives a fault time to show.",
		Example: "sleep 800ms",
		Pattern: regexp.MustCompile(`^sleep (\S+)$`),
		Parse: func(m []string, st *Step, _ *parseState) (err error) {
			st.Duration, err = parseDuration(m[1])
			return err
		},
		Run: func(ctx context.Context, r *runner, st *Step) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(st.Duration):
				return nil
			}
		},
	},
	{
		Usage:   "kill -9 TARGET",
		Help:    "A crash: SIGKILL, no drain, no goodbye. A replica's in-flight requests get no answer; a memory session dies with it. Redis comes back from its append-only file when started again. With redis=sentinel, \"kill -9 redis primary\" kills the server the sentinels call primary: they promote the replica.",
		Example: "kill -9 replica of alice",
		Pattern: regexp.MustCompile(`^kill -9 ` + reTarget + `$`),
		Parse:   parseTarget(1),
		Run:     runFault("kill", "%[1]s killed (kill -9)", "", spanNone, ""),
		Verb:    "kill",
		Local: func(ctx context.Context, d *LocalDriver, f Fault) error {
			if ha := d.c.RedisHA(); ha != nil && f.Target == "redis primary" {
				old, err := ha.KillPrimary(ctx)
				if err == nil {
					// The promotion is the sentinels' doing, seconds later:
					// the timeline marks it when it happens.
					d.watch(func(ctx context.Context) {
						if p, err := ha.WaitFailover(ctx, old); err == nil && d.tell != nil {
							d.tell(fmt.Sprintf("Sentinel promoted %s to primary (%s was killed)", p.Name(), old.Name()))
						}
					})
				}
				return err
			}
			return d.onTarget(f, (*cluster.Redis).Kill, (*cluster.Replica).Kill)
		},
	},
	{
		Usage: "stop TARGET [with drain D | without drain]",
		Help: "SIGTERM, then waits for the exit. A replica turns not-ready, keeps serving for its drain so nginx moves away, finishes what is in flight and exits; Redis saves and exits. " +
			"The lab starts replicas with a 300 ms drain to keep runs short (the shop's own default is 2 s): \"with drain 2s\" starts that replica with a 2 s drain, \"without drain\" with none, so it stops taking requests at once. A replica's drain is set when the cluster starts, so one script gives each replica one drain.",
		Example: "stop shop2 with drain 2s",
		Pattern: regexp.MustCompile(`^stop (.+?)(?: (with drain \S+|without drain))?$`),
		Parse:   parseStop,
		Run:     runFault("stop", "%[1]s stopping (SIGTERM%[2]s)", "%[1]s exited", spanWhole, "stop"),
		Verb:    "stop",
		Local: func(ctx context.Context, d *LocalDriver, f Fault) error {
			return d.onTarget(f, (*cluster.Redis).Stop, func(r *cluster.Replica) error { return stopReplica(ctx, r) })
		},
	},
	{
		Usage:   "start TARGET",
		Help:    "Starts a stopped or killed replica or Redis again and waits until it is ready. With redis=sentinel, \"start redis\" brings back every Redis server that is down, as a replica of the current primary.",
		Example: "start redis",
		Pattern: regexp.MustCompile(`^start ` + reTarget + `$`),
		Parse:   parseTarget(1),
		Run:     runFault("start", "", "%[1]s started again", spanNone, ""),
		Verb:    "start",
		Local: func(ctx context.Context, d *LocalDriver, f Fault) error {
			if ha := d.c.RedisHA(); ha != nil && f.Target == "redis" {
				return ha.StartStopped(ctx)
			}
			return d.onTarget(f,
				func(r *cluster.Redis) error { return r.Start(ctx) },
				func(r *cluster.Replica) error { return r.Start(ctx) })
		},
	},
	{
		Usage:   "restart TARGET [with drain D | without drain]",
		Help:    "stop, then start: a deploy of one replica, or a Redis restart.",
		Example: "restart shop1",
		Pattern: regexp.MustCompile(`^restart (.+?)(?: (with drain \S+|without drain))?$`),
		Parse:   parseStop,
		Run:     runRestart,
		Uses:    []string{"stop", "start"},
	},
	{
		Usage: "rekey shopN with KEY[,KEY...]",
		Help: "Redeploys replica shopN (SIGTERM, drain, start) with other cookie session keys. KEYs are names the lab turns into secrets of its own, the same secret for the same name throughout a run; the cluster starts with the one key named old. " +
			"The first key seals every write, each one opens: \"with new,old\" rolls a key in without losing a session, \"with new\" drops old, and a name no replica had (\"with wrong\") is a misconfigured replica. Only cookie sessions have keys.",
		Example: "rekey shop1 with new,old",
		Pattern: regexp.MustCompile(`^rekey (\S+) with (\S+)$`),
		Parse: func(m []string, st *Step, ps *parseState) error {
			if err := checkReplica(m[1], ps); err != nil {
				return err
			}
			st.Target = m[1]
			for _, k := range strings.Split(m[2], ",") {
				if !regexp.MustCompile(`^` + reName + `$`).MatchString(k) {
					return fmt.Errorf("key name %q: want lower-case letters and digits, e.g. new,old", k)
				}
				st.Keys = append(st.Keys, k)
			}
			return nil
		},
		Run: func(ctx context.Context, r *runner, st *Step) error {
			keys := strings.Join(st.Keys, ",")
			r.rec.begin("rekey "+st.Target, fmt.Sprintf("%s redeploying with session keys %s (SIGTERM, then start)", st.Target, keys))
			if err := r.fault(ctx, Fault{Do: "rekey", Target: st.Target, Keys: st.Keys}); err != nil {
				return err
			}
			r.rec.end("rekey "+st.Target, fmt.Sprintf("%s serves again, sealing with %s", st.Target, st.Keys[0]))
			return nil
		},
		Verb: "rekey",
		Local: func(ctx context.Context, d *LocalDriver, f Fault) error {
			rep := d.c.Replica(f.Target)
			if rep == nil {
				return fmt.Errorf("lab: no replica %s", f.Target)
			}
			if err := stopReplica(ctx, rep); err != nil {
				return err
			}
			rep.SetEnv("SHOP_SESSION_KEYS=" + d.sessionKeys(f.Keys...))
			return rep.Start(ctx)
		},
	},
	{
		Usage:   "replace TARGET",
		Help:    "A replica's container replaced, as an orchestrator does after a crash: kill -9, then a new replica with the same name and address and an empty disk (its uploads directory is gone). What it kept on its own disk (photos with uploads=disk) is lost; what it kept elsewhere is not.",
		Example: "replace replica of alice",
		Pattern: regexp.MustCompile(`^replace ` + reTarget + `$`),
		Parse: func(m []string, st *Step, ps *parseState) error {
			if err := parseTarget(1)(m, st, ps); err != nil {
				return err
			}
			if strings.HasPrefix(st.Target, "redis") {
				return errors.New("replace: only a replica has a disk to lose; want shopN or \"replica of NAME\"")
			}
			return nil
		},
		Run:  runFault("replace", "%[1]s killed (kill -9) and replaced with an empty disk", "%[1]s serves again, its disk empty", spanWhole, "replace"),
		Verb: "replace",
		Local: func(ctx context.Context, d *LocalDriver, f Fault) error {
			return d.c.ReplaceReplica(ctx, f.Target)
		},
	},
	{
		Usage:   "pause TARGET",
		Help:    "SIGSTOP: a hung process. The kernel still accepts connections but nothing answers; a replica's requests wait for nginx's timeout, Redis commands for the shop's store timeout (about 1 s).",
		Example: "pause redis",
		Pattern: regexp.MustCompile(`^pause ` + reTarget + `$`),
		Parse:   parseTarget(1),
		Run:     runFault("pause", "%[1]s paused (SIGSTOP)", "", spanBegins, "paused"),
		Verb:    "pause",
		Local: func(ctx context.Context, d *LocalDriver, f Fault) error {
			return d.onTarget(f, (*cluster.Redis).Pause, (*cluster.Replica).Pause)
		},
	},
	{
		Usage:   "resume TARGET",
		Help:    "SIGCONT: a paused replica or Redis carries on where it stopped.",
		Example: "resume redis",
		Pattern: regexp.MustCompile(`^resume ` + reTarget + `$`),
		Parse:   parseTarget(1),
		Run:     runFault("resume", "", "%[1]s resumed (SIGCONT), serves again", spanEnds, "paused"),
		Verb:    "resume",
		Local: func(ctx context.Context, d *LocalDriver, f Fault) error {
			return d.onTarget(f, (*cluster.Redis).Resume, (*cluster.Replica).Resume)
		},
	},
	{
		Usage:   "partition redis",
		Help:    "Cuts the network between the replicas and Redis: connections hang, as on a real cut, rather than being refused. Every request that needs the session answers 503 within the store timeout (about 1 s); the catalog still serves. With redis=sentinel the sentinels lose the servers too and cannot fail over.",
		Example: "partition redis",
		Pattern: regexp.MustCompile(`^partition redis$`),
		Order:   orderRedisNet,
		Run:     runNet(Fault{Do: "partition", Target: "redis"}, "the network to Redis is cut", ""),
		Verb:    "partition",
		Needs:   Needs{RedisProxy: true},
		Local: func(ctx context.Context, d *LocalDriver, f Fault) error {
			return d.c.PartitionRedis()
		},
	},
	{
		Usage:   "heal redis",
		Help:    "Ends a partition: connections that lived through it are closed, new ones work, the replicas recover by themselves.",
		Example: "heal redis",
		Pattern: regexp.MustCompile(`^heal redis$`),
		Order:   orderRedisNet,
		Run:     runNet(Fault{Do: "heal", Target: "redis"}, "", "the network to Redis is back"),
		Verb:    "heal",
		Needs:   Needs{RedisProxy: true},
		Local: func(ctx context.Context, d *LocalDriver, f Fault) error {
			if err := d.c.HealRedis(); err != nil {
				return err
			}
			if ha := d.c.RedisHA(); ha != nil {
				// The sentinels saw both servers down: the next step may
				// count on a tier they see whole again.
				return ha.WaitHealthy(ctx)
			}
			return nil
		},
	},
	{
		Usage:   "delay redis D|off",
		Help:    "Adds D (whole milliseconds) to every exchange with Redis, one way: the price every stateless request pays for a store across the network, turned up. \"off\" takes it away.",
		Example: "delay redis 2ms",
		Pattern: regexp.MustCompile(`^delay redis (\S+)$`),
		Parse: func(m []string, st *Step, _ *parseState) error {
			st.Target = "redis"
			if m[1] == "off" {
				return nil
			}
			d, err := time.ParseDuration(m[1])
			if err != nil || d < time.Millisecond || d > 10*time.Second || d%time.Millisecond != 0 {
				return fmt.Errorf("delay %q: want whole milliseconds from 1ms to 10s, e.g. 2ms, or off", m[1])
			}
			st.Duration = d
			return nil
		},
		Order: orderRedisNet,
		Run: func(ctx context.Context, r *runner, st *Step) error {
			f := Fault{Do: "delay", Target: "redis", Delay: st.Duration}
			if err := r.fault(ctx, f); err != nil {
				return err
			}
			if st.Duration == 0 {
				r.rec.end("delay", "Redis is next door again (no delay)")
			} else {
				r.rec.end("delay", "")
				r.rec.begin("delay", fmt.Sprintf("Redis is %s away (every exchange)", st.Duration))
			}
			return nil
		},
		Verb:  "delay",
		Needs: Needs{RedisProxy: true},
		Local: func(ctx context.Context, d *LocalDriver, f Fault) error {
			return d.c.DelayRedis(f.Delay)
		},
	},
	{
		Usage:   "add replica",
		Help:    "Scales out: starts the next replica (shop4 after three), waits until it is ready and reloads nginx with it.",
		Example: "add replica",
		Pattern: regexp.MustCompile(`^add replica$`),
		Also:    []string{"scale to N replicas", "scale out", "scale up", "add N replicas", "add a replica"},
		Order: func(ps *parseState, st *Step) error {
			if !ps.started {
				return errors.New(`"add replica" before "start N replicas": the cluster must be started first`)
			}
			ps.replicas++
			st.Target = "shop" + strconv.Itoa(ps.replicas)
			return nil
		},
		Run: func(ctx context.Context, r *runner, st *Step) error {
			r.rec.say(r.rec.since(), "adding a replica")
			if err := r.fault(ctx, Fault{Do: "add", Target: st.Target}); err != nil {
				return err
			}
			r.rec.event("%s added, takes traffic", st.Target)
			return nil
		},
		Verb: "add",
		Local: func(ctx context.Context, d *LocalDriver, f Fault) error {
			rep, err := d.c.AddReplica(ctx, d.AddEnv...)
			if err != nil {
				return err
			}
			if rep.Name() != f.Target {
				return fmt.Errorf("lab: the new replica is %s, the script counted %s", rep.Name(), f.Target)
			}
			return nil
		},
	},
	{
		Usage:   "remove replica shopN",
		Help:    "Scales in: reloads nginx without shopN, then stops it (SIGTERM, drain, exit).",
		Example: "remove replica shop4",
		Pattern: regexp.MustCompile(`^remove replica (\S+)$`),
		Also:    []string{"scale in", "scale down", "remove a replica"},
		Parse: func(m []string, st *Step, ps *parseState) error {
			if err := checkReplica(m[1], ps); err != nil {
				return err
			}
			st.Target = m[1]
			return nil
		},
		Run: func(ctx context.Context, r *runner, st *Step) error {
			r.rec.begin("remove "+st.Target, st.Target+" removed: nginx reloads without it, then SIGTERM")
			if err := r.fault(ctx, Fault{Do: "remove", Target: st.Target}); err != nil {
				return err
			}
			r.rec.end("remove "+st.Target, st.Target+" drained and exited")
			return nil
		},
		Verb: "remove",
		Local: func(ctx context.Context, d *LocalDriver, f Fault) error {
			return d.c.RemoveReplica(ctx, f.Target)
		},
	},
}

// giftNote is a note of the shop's most, 140 characters, different for
// every shopper and product: what "with a note" writes.
func giftNote(shopper string, product int) string {
	n := fmt.Sprintf("For %s, product %d: ", shopper, product)
	return n + strings.Repeat("happy birthday! ", 10)[:140-len(n)]
}

// parseShopper parses "as NAME ..." (the name in m[1]) and then the rest.
func parseShopper(rest func(m []string, st *Step) error) func(m []string, st *Step, ps *parseState) error {
	return func(m []string, st *Step, ps *parseState) error {
		if !regexp.MustCompile(`^` + reName + `$`).MatchString(m[1]) {
			return fmt.Errorf("shopper name %q: want lower-case letters and digits, starting with a letter", m[1])
		}
		st.Shopper = m[1]
		if rest != nil {
			return rest(m, st)
		}
		return nil
	}
}

// orderRedisNet: a network fault needs a started cluster (and declares,
// with Needs, the proxy in front of Redis it works on).
func orderRedisNet(ps *parseState, st *Step) error {
	if !ps.started {
		return fmt.Errorf(`%q before "start N replicas": the cluster must be started first`, st.Text)
	}
	return nil
}

// runNet runs a network fault on Redis, telling it before or after.
// A partition is a stretch on the timeline, from the cut to the heal.
func runNet(f Fault, before, after string) func(ctx context.Context, r *runner, st *Step) error {
	return func(ctx context.Context, r *runner, st *Step) error {
		if before != "" {
			r.rec.begin("partition", before)
		}
		if err := r.fault(ctx, f); err != nil {
			return err
		}
		if after != "" {
			r.rec.end("partition", after)
		}
		return nil
	}
}

// expectStep is the form of every "expect ..." line; expect.go holds what
// may follow "expect".
var expectStep = &stepForm{
	Usage: "expect WHAT",
	Order: func(ps *parseState, st *Step) error {
		if !ps.started {
			return errors.New(`an expectation before "start N replicas": there is nothing to judge yet`)
		}
		if ps.loading {
			return errors.New(`an expectation while load is running; did you mean "wait for load" first? Carts are judged while nobody shops`)
		}
		if ps.chaos {
			return errors.New(`an expectation while chaos is running; did you mean "stop chaos" first? The judge looks at a cluster at rest`)
		}
		return nil
	},
	Run: func(ctx context.Context, r *runner, st *Step) error {
		r.expect(ctx, st)
		return nil
	},
}

// count parses a number in [lo, hi] for the placeholder what.
func count(s, what string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%s %q: want a number from %d to %d", what, s, lo, hi)
	case n < lo || n > hi:
		return 0, fmt.Errorf("%s %d: want %d to %d", what, n, lo, hi)
	}
	return n, nil
}

var (
	reShopN     = regexp.MustCompile(`^shop(\d+)$`)
	reReplicaOf = regexp.MustCompile(`^replica of ` + reName + `$`)
)

// parseTarget parses the TARGET in match group i.
func parseTarget(i int) func(m []string, st *Step, ps *parseState) error {
	return func(m []string, st *Step, ps *parseState) error {
		t := m[i]
		switch {
		case t == "redis", t == "redis primary":
			st.Target = t
		case reShopN.MatchString(t):
			if err := checkReplica(t, ps); err != nil {
				return err
			}
			st.Target = t
		case reReplicaOf.MatchString(t):
			st.Shopper = strings.TrimPrefix(t, "replica of ")
			if !ps.shopped[st.Shopper] {
				return fmt.Errorf("%q: %s has not added anything before this line, so no replica holds a session of %s; did you mean \"as %s add 1 of product 1\" first?", t, st.Shopper, st.Shopper, st.Shopper)
			}
		default:
			return unknownTarget(t)
		}
		return nil
	}
}

// drainWords are the drain clauses a stop or restart may end in.
var drainWords = []string{"without drain", "with drain 2s"}

// unknownTarget says a target is none of the forms, and when it is a good
// target followed by a misspelt drain ("shop1 wihtout drain") names the
// drain it meant.
func unknownTarget(t string) error {
	first, rest, _ := strings.Cut(t, " ")
	if rest != "" && (first == "redis" || reShopN.MatchString(first)) {
		best, bestD := "", -1
		for _, w := range drainWords {
			cand := w
			if f := strings.Fields(rest); strings.HasPrefix(w, "with drain ") && len(f) == 3 {
				// Keep the duration they wrote: "wiht drain 3s" → "with drain 3s".
				if _, err := time.ParseDuration(f[2]); err == nil {
					cand = "with drain " + f[2]
				}
			}
			if d := distance(rest, cand); bestD < 0 || d < bestD {
				best, bestD = cand, d
			}
		}
		if bestD <= len(best)/3 {
			return fmt.Errorf("unknown target %q; did you mean %q?", t, first+" "+best)
		}
	}
	return fmt.Errorf("unknown target %q: want shopN, redis, redis primary or \"replica of NAME\"", t)
}

// checkReplica says when shopN names no replica the script has by then.
func checkReplica(name string, ps *parseState) error {
	m := reShopN.FindStringSubmatch(name)
	if m == nil {
		return fmt.Errorf("%q is not a replica: want shopN", name)
	}
	if n, _ := strconv.Atoi(m[1]); n < 1 || n > ps.replicas {
		return fmt.Errorf("no replica %s here: the cluster has shop1 to shop%d", name, ps.replicas)
	}
	return nil
}

// parseStop parses "stop|restart TARGET [with drain D | without drain]". A
// drain is fixed when a replica starts, so each replica gets one.
func parseStop(m []string, st *Step, ps *parseState) error {
	if err := parseTarget(1)(m, st, ps); err != nil {
		return err
	}
	switch {
	case m[2] == "":
		return nil
	case strings.HasPrefix(st.Target, "redis"):
		return fmt.Errorf(`Redis has no drain: write "stop %s"`, st.Target)
	case st.Shopper != "":
		return fmt.Errorf(`a drain needs a replica the script names: "replica of %s" is only known while it runs; did you mean "stop shop1 %s"?`, st.Shopper, m[2])
	case m[2] == "without drain":
		st.Drain = Drain{Set: true}
	default:
		d, err := parseDuration(strings.TrimPrefix(m[2], "with drain "))
		if err != nil {
			return err
		}
		st.Drain = Drain{Set: true, Duration: d}
	}
	if prev, ok := ps.drains[st.Target]; ok && prev != st.Drain {
		return fmt.Errorf("%s is stopped %s on line %d: a replica's drain is set when it starts, so one script gives it one drain", st.Target, prev, ps.drainAt[st.Target])
	}
	ps.drains[st.Target] = st.Drain
	ps.drainAt[st.Target] = ps.line
	return nil
}

// runFault runs a one-fault step, telling it before (an event on the
// timeline) and after. In both texts %[1]s is the target and %[2]s the
// drain the step asked for (", with drain 2s" or "").
//
// span marks the step on the timeline as a stretch of time, not a moment:
// spanWhole from before to after (a stop's drain), spanBegins from before
// until a later step ends it (a pause until its resume), spanEnds the
// stretch an earlier step began. Spans are keyed by span key and target.
func runFault(verb, before, after string, span spanKind, key string) func(ctx context.Context, r *runner, st *Step) error {
	return func(ctx context.Context, r *runner, st *Step) error {
		target, err := r.target(st)
		if err != nil {
			return err
		}
		drain := ""
		if st.Drain.Set {
			drain = ", " + st.Drain.String()
		}
		k := key + " " + target
		if before != "" {
			text := fmt.Sprintf(before, target, drain)
			if span == spanWhole || span == spanBegins {
				r.rec.begin(k, text)
			} else {
				r.rec.event("%s", text)
			}
		}
		if err := r.fault(ctx, Fault{Do: verb, Target: target, Drain: st.Drain}); err != nil {
			return err
		}
		text := fmt.Sprintf(after, target, drain)
		switch {
		case span == spanWhole || span == spanEnds:
			r.rec.end(k, text)
		case after == "":
		case before == "":
			r.rec.event("%s", text)
		default:
			r.rec.say(r.rec.since(), text)
		}
		return nil
	}
}

// spanKind says how a step shows on the timeline.
type spanKind int

const (
	spanNone   spanKind = iota // a moment: a dashed line
	spanWhole                  // from before to after
	spanBegins                 // from before to a later step's end
	spanEnds                   // ends what an earlier step began
)

func runRestart(ctx context.Context, r *runner, st *Step) error {
	target, err := r.target(st)
	if err != nil {
		return err
	}
	drain := ""
	if st.Drain.Set {
		drain = ", " + st.Drain.String()
	}
	r.rec.begin("restart "+target, fmt.Sprintf("%s restarting (SIGTERM%s, then start)", target, drain))
	if err := r.fault(ctx, Fault{Do: "stop", Target: target, Drain: st.Drain}); err != nil {
		return err
	}
	if err := r.fault(ctx, Fault{Do: "start", Target: target}); err != nil {
		return err
	}
	r.rec.end("restart "+target, target+" serves again")
	return nil
}

// stepCandidates are the forms an unknown step line may have meant.
func stepCandidates() []candidate {
	out := []candidate{{usage: "lesson TEXT", example: "lesson round robin scatters memory sessions"}, {usage: "run with KEY=VALUE ...", example: "run with store=redis lb=roundrobin"}}
	for _, f := range steps {
		out = append(out, candidate{usage: f.Usage, example: f.Example})
		for _, a := range f.Also {
			out = append(out, candidate{usage: f.Usage, example: f.Example, also: a})
		}
	}
	return append(out, candidate{usage: "expect WHAT", example: "expect carts intact"})
}

// parseLoad parses "load N NOUN for D": at most most of them, for D.
func parseLoad(noun string, most int) func(m []string, st *Step, _ *parseState) error {
	return func(m []string, st *Step, _ *parseState) (err error) {
		if st.N, err = count(m[1], noun, 1, most); err != nil {
			return err
		}
		st.Duration, err = parseDuration(m[2])
		return err
	}
}

// startLoad is the order a background load keeps: after the cluster
// starts, and one load at a time until "wait for load".
func startLoad(ps *parseState, st *Step) error {
	if !ps.started {
		return errors.New(`load before "start N replicas": the cluster must be started first`)
	}
	if ps.loading {
		return errors.New(`load is already running; did you mean "wait for load" first?`)
	}
	ps.loading = true
	return nil
}
