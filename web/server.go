// Package web is the shop's HTTP layer: routes, pages, the session
// middleware and the cart.
package web

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/a-h/templ"
	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/jobs"
	"github.com/statelab/shop/live"
	"github.com/statelab/shop/session"
	"github.com/statelab/shop/store"
	"github.com/statelab/shop/templates"
	"golang.org/x/crypto/bcrypt"
)

// Store is what the web layer needs from the database.
type Store interface {
	Ping(ctx context.Context) error
	Categories(ctx context.Context) ([]store.Category, error)
	Products(ctx context.Context) ([]store.Product, error)
	Product(ctx context.Context, id int64) (store.Product, error)
	PlaceOrder(ctx context.Context, o store.NewOrder) (store.Order, bool, error)
	Order(ctx context.Context, id string) (store.Order, error)
	OrderByKey(ctx context.Context, key string) (store.Order, error)
	OrdersByAccount(ctx context.Context, accountID int64) ([]store.Order, error)
	CreateAccountWithCart(ctx context.Context, email string, hash, cart []byte) (store.Account, error)
	DeleteNewAccount(ctx context.Context, id int64) error
	AccountByEmail(ctx context.Context, email string) (store.Account, error)
	SavedCart(ctx context.Context, accountID int64) ([]byte, error)
	SaveCart(ctx context.Context, accountID int64, data []byte) error
	BumpSessionEpoch(ctx context.Context, accountID int64) (int64, error)
	AddReview(ctx context.Context, r store.Review) (store.Review, error)
	Reviews(ctx context.Context, productID int64, limit int) ([]store.Review, error)
	ReviewByPhoto(ctx context.Context, key string) (store.Review, error)
	Messages(ctx context.Context, kinds []string, limit int) ([]store.Message, error)
}

// Config is the replica's identity and behaviour.
type Config struct {
	// Replica is this replica's name, shown on every page and header.
	Replica string
	// Logger receives one line per request and every 5xx.
	Logger *slog.Logger
	// Metrics receives the server's counters. main hands the same Metrics
	// to the session store as its Observer; nil makes a fresh one that sees
	// no store operations.
	Metrics *Metrics
	// TrustedProxies are the addresses whose X-Forwarded-For and
	// X-Forwarded-Proto are believed (nginx). Nil means loopback and the
	// private ranges, where nginx sits in the Procfile and compose clusters.
	TrustedProxies []netip.Prefix
	// PasswordHashers is how many bcrypt hashes may run at once (as many
	// more may queue; past that a login or register is a 503 at once). 0
	// means GOMAXPROCS.
	PasswordHashers int
	// PasswordCost is the bcrypt cost of the hashes this replica makes,
	// and of the stand-in it compares an unknown email against; 0 means
	// bcrypt.DefaultCost. Hashes already stored keep the cost they were
	// made with. Only tests lower it: under the race detector one hash at
	// the default cost takes a second or more.
	PasswordCost int
	// BodyTimeout is how long a request body may take to arrive before the
	// request is a 408; 0 means DefaultBodyTimeout.
	BodyTimeout time.Duration
	// Limiter counts login and registration attempts; nil counts them in
	// this replica alone, with the default limits.
	Limiter LoginLimiter
	// Presence is where replicas announce themselves for /cluster; nil
	// knows this replica alone.
	Presence Presence
	// Board is the board behind /metrics/live; nil shows this replica
	// alone.
	Board LiveBoard
	// Sentinel shows the Redis tier behind Sentinel on /cluster and the
	// ribbon; nil without Sentinel.
	Sentinel SentinelView
	// UploadTimeout is how long a review with a photo may take to arrive
	// and be kept; 0 means DefaultUploadTimeout.
	UploadTimeout time.Duration
	// Receipts makes each order's receipt in the background (-jobs). Nil
	// means jobs in this process's memory with no delay.
	Receipts Receipts
	// ReceiptPatience is how long after an order its page reloads for a
	// receipt held in another replica's memory (-jobs memory) before it
	// says that only that replica can tell, and stops; 0 means
	// DefaultReceiptPatience.
	ReceiptPatience time.Duration
	// Schedule (-schedule) and ReportEvery (-report-every), for the
	// outbox page's words.
	Schedule    string
	ReportEvery time.Duration
	// LiveHeartbeat is how often an idle event stream gets a heartbeat
	// comment; 0 means DefaultLiveHeartbeat.
	LiveHeartbeat time.Duration
	// Profile is -profile (stateful, stateless), or "" when the state
	// flags were set one by one: /state and the ribbon name it.
	Profile string
	// State are the parts of the replica that keep a kind of state, for
	// the state audit (/state); the server adds its own caches.
	State []StateHolder
	// Peers are the cluster's replicas (this one may be among them), by
	// name and address: without a shared Redis, /metrics/live asks each
	// for its own counters (GET /metrics/live.json) so the board shows
	// every replica. Memory replicas still share nothing else.
	Peers []Peer
}

// Peer is one replica of the cluster's list (-peers).
type Peer struct {
	Name string // "shop2"
	Addr string // "127.0.0.1:8082"
}

// Server is one replica's HTTP handler.
type Server struct {
	cfg      Config
	db       Store
	sessions session.Store
	// photos keeps review photos: this replica's disk or a bucket.
	photos   Photos
	log      *slog.Logger
	catalog  catalogCache
	metrics  *Metrics
	limiter  LoginLimiter
	presence Presence
	board    LiveBoard
	hashers  *hashGate
	receipts Receipts
	// dummyHash is compared against when an email has no account, so a
	// failed login takes as long whether or not the account exists. It is
	// made on first use, not at start: a hash costs tens of milliseconds,
	// and a replica must be ready fast.
	dummyHash func() []byte
	// live holds the event streams (GET /events) and carries what changed
	// to them: this replica's only, or every replica's through Redis.
	live     Live
	pump     *pump // the event streams taken over from net/http
	draining atomic.Bool
	handler  http.Handler
	// peers asks the other replicas of Config.Peers for their counters.
	peers *http.Client
	// started is when this Server was made, before it served anything:
	// what it announces as its start, so that another replica can tell
	// an order placed before it from one placed by it.
	started time.Time
}

// NewServer wires the routes over the database, the session store, what
// cfg hands over of the services the replicas may share (login limits,
// presence, the live board), events, the live event streams (live.LocalHub
// or live.RedisHub; nil gives the Server a LocalHub of its own, which Drain
// ends), and the review photo store.
func NewServer(cfg Config, db Store, sessions session.Store, events Live, photos Photos) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(cfg.Replica, sessions.Kind())
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.UploadTimeout <= 0 {
		cfg.UploadTimeout = DefaultUploadTimeout
	}
	if cfg.LiveHeartbeat <= 0 {
		cfg.LiveHeartbeat = DefaultLiveHeartbeat
	}
	if cfg.ReceiptPatience <= 0 {
		cfg.ReceiptPatience = DefaultReceiptPatience
	}
	if events == nil {
		events = live.NewLocal(live.Options{})
	}
	if cfg.PasswordCost == 0 {
		cfg.PasswordCost = bcrypt.DefaultCost
	}
	if cfg.Limiter == nil {
		cfg.Limiter = redisclient.NewLocalLimiter(redisclient.Limits{})
	}
	if cfg.Presence == nil {
		cfg.Presence = redisclient.NewLocalPresence()
	}
	if cfg.Board == nil {
		cfg.Board = redisclient.NewLocalBoard()
	}
	s := &Server{cfg: cfg, db: db, sessions: sessions, live: events, photos: photos, log: cfg.Logger, metrics: cfg.Metrics,
		limiter: cfg.Limiter, presence: cfg.Presence, board: cfg.Board, hashers: newHashGate(cfg.PasswordHashers), started: time.Now()}
	s.metrics.watchLive(events)
	s.peers = &http.Client{Timeout: peerTimeout}
	s.pump = newPump(cfg.LiveHeartbeat)
	s.dummyHash = sync.OnceValue(func() []byte {
		h, err := bcrypt.GenerateFromPassword([]byte("statelab-no-such-account"), s.cfg.PasswordCost)
		if err != nil {
			panic(err) // only for a cost out of range: a programming error
		}
		return h
	})
	s.catalog.db = db
	s.receipts = cfg.Receipts
	if s.receipts == nil {
		s.receipts = jobs.NewMemory(jobs.Options{Replica: cfg.Replica, Render: RenderReceipt, Logger: cfg.Logger})
	}
	s.db = countingDB{Store: db, m: s.metrics}
	if cfg.TrustedProxies == nil {
		s.cfg.TrustedProxies = defaultTrustedProxies
	}
	mux := http.NewServeMux()
	s.addRoutes(mux)
	var h http.Handler = mux
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serveError(w, r, &Error{Status: http.StatusForbidden, Message: "Cross-origin requests may not change anything here."})
	}))
	h = cop.Handler(h)
	h = s.withHeaders(h)
	h = s.withRequestLog(h)
	s.handler = h
	return s
}

// ServeHTTP serves one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Drain turns /readyz to 503 so load balancers stop sending new requests,
// while everything else keeps being served; event streams end at once
// (with a retry: hint) and new ones are refused, so that their browsers
// reconnect to another replica now rather than when this one exits.
func (s *Server) Drain() {
	s.draining.Store(true)
	s.live.Drain()
}

// render renders c into a buffer and only then writes status and body, so a
// failed render becomes a clean error page instead of half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	buf := bufferPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufferPool.Put(buf)
	// Rendering into a buffer needs the request's values, not its liveness: a
	// request whose context ended (its client left, or its body broke off)
	// still gets its page; whoever is left to read it decides.
	if err := c.Render(context.WithoutCancel(r.Context()), buf); err != nil {
		s.log.ErrorContext(r.Context(), "render failed", "err", err)
		http.Error(w, "The page could not be rendered.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// catalogCache holds the catalog, which does not change while the shop runs
// (only stock does, and stock is read fresh). It is rebuildable state: each
// replica keeps its own copy, and losing it loses nothing.
type catalogCache struct {
	db   Store
	mu   sync.Mutex // serializes loading
	snap atomic.Pointer[catalog]
}

// catalog is one loaded copy of the catalog.
type catalog struct {
	categories []store.Category
	products   []store.Product
	byID       map[int64]*store.Product
	bySlug     map[string]*store.Product
	// views are products[i] as the catalog page shows them, built once:
	// formatting 24 prices and URLs on every request was a tenth of the
	// page's allocations.
	views []templates.Product
	// bodies are the catalog page inside its layout (category menu, heading,
	// product grid), rendered once per category ("" is all products) and
	// cart availability: most of the page, the same for every visitor.
	bodies map[catalogKey]catalogBody
}

type catalogKey struct {
	category string
	withCart bool
}

// catalogBody is one rendered templates.CatalogBody and its heading (the
// page's title). The HTML is kept in pieces split where each add form's
// idempotency key begins, so that a page puts its own key there.
type catalogBody struct {
	heading string
	pieces  []string
}

// addKeyPlaceholder stands for the page's add key in a rendered catalog
// body: a valid key that randomToken never makes.
const addKeyPlaceholder = "ADDKEYxPLACEHOLDERxADDKEY"

// withKey is the body with addKey starting each add form's key: the cached
// bytes and the key, written in turn, with no copy of the page.
func (b catalogBody) withKey(addKey string) templ.Component {
	return templ.ComponentFunc(func(_ context.Context, w io.Writer) error {
		for i, p := range b.pieces {
			if i > 0 {
				if _, err := io.WriteString(w, addKey); err != nil {
					return err
				}
			}
			if _, err := io.WriteString(w, p); err != nil {
				return err
			}
		}
		return nil
	})
}

// renderBodies renders every catalog body the catalog page can show.
func (cat *catalog) renderBodies(ctx context.Context) error {
	cat.bodies = make(map[catalogKey]catalogBody)
	slugs := []string{""}
	for _, c := range cat.categories {
		slugs = append(slugs, c.Slug)
	}
	for _, slug := range slugs {
		content := templates.CatalogContent{Heading: "All products", AddKey: addKeyPlaceholder}
		for _, c := range cat.categories {
			current := c.Slug == slug
			if current {
				content.Heading = c.Name
			}
			content.Categories = append(content.Categories, templates.Category{Slug: c.Slug, Name: c.Name, Current: current})
		}
		for i := range cat.products {
			if slug == "" || cat.products[i].CategorySlug == slug {
				content.Products = append(content.Products, cat.views[i])
			}
		}
		for _, withCart := range []bool{true, false} {
			content.WithCart = withCart
			var b strings.Builder
			if err := templates.CatalogBody(content).Render(ctx, &b); err != nil {
				return fmt.Errorf("web: render the catalog: %w", err)
			}
			cat.bodies[catalogKey{slug, withCart}] = catalogBody{heading: content.Heading, pieces: strings.Split(b.String(), addKeyPlaceholder)}
		}
	}
	return nil
}

func (c *catalogCache) load(ctx context.Context) (*catalog, error) {
	if cat := c.snap.Load(); cat != nil {
		return cat, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cat := c.snap.Load(); cat != nil {
		return cat, nil
	}
	cats, err := c.db.Categories(ctx)
	if err != nil {
		return nil, err
	}
	prods, err := c.db.Products(ctx)
	if err != nil {
		return nil, err
	}
	cat := &catalog{categories: cats, products: prods,
		byID:   make(map[int64]*store.Product, len(prods)),
		bySlug: make(map[string]*store.Product, len(prods)),
	}
	for i := range prods {
		cat.byID[prods[i].ID] = &prods[i]
		cat.bySlug[prods[i].Slug] = &prods[i]
		cat.views = append(cat.views, productView(&prods[i]))
	}
	if err := cat.renderBodies(ctx); err != nil {
		return nil, err
	}
	c.snap.Store(cat)
	return cat, nil
}
