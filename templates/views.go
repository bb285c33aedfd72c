// Package templates holds the shop's templ components. Components take plain
// view structs defined here, so they depend on nothing else in the project.
package templates

import "github.com/a-h/templ"

// SessionState says how this replica sees the browser's session.
type SessionState string

// The session states a ribbon can show.
const (
	// SessionNone: the browser sent no session cookie.
	SessionNone SessionState = "none"
	// SessionKnown: this replica found the session in its store.
	SessionKnown SessionState = "known"
	// SessionUnknown: the browser sent a cookie this replica's store does not know.
	SessionUnknown SessionState = "unknown"
	// SessionUnavailable: the session store did not answer.
	SessionUnavailable SessionState = "unavailable"
	// SessionBusy: another request held the session's lock for the whole
	// wait; the store itself answers.
	SessionBusy SessionState = "busy"
)

// Lives says where the session lives, as its store declares it: pages
// choose their words by it, never by the store's name.
type Lives string

const (
	// LivesInReplica: in the memory of the replica that created it.
	LivesInReplica Lives = "replica"
	// LivesShared: in a store every replica reads and writes (named by
	// the view's Where).
	LivesShared Lives = "shared"
	// LivesInBrowser: in the cookie itself.
	LivesInBrowser Lives = "browser"
)

// Ribbon is the strip on every page that tells which replica served it and
// where the session lives.
type Ribbon struct {
	Replica    string
	ColorClass string // "replica-c0".."replica-c11", stable per replica name
	Store      string // the store's name (-session-store), shown, never compared
	// Lives is where the session lives, and Where names a shared store
	// ("Redis").
	Lives Lives
	Where string
	// CookieBytes is the size of the session cookie (name and value) this
	// request sent: with cookie sessions, the whole session.
	CookieBytes int
	// Dropped says why the session the browser sent could not be used
	// (a cookie tampered with, expired, sealed with an unknown key, revoked).
	Dropped string
	// Profile is the -profile preset the replica runs (stateful or
	// stateless), "" when its state flags were set one by one.
	Profile string
	// RedisPrimary, with Sentinel, is the Redis primary's address as this
	// replica last heard it ("" when none is known yet).
	RedisPrimary string
	Sentinel     bool // the replica finds Redis through Sentinel
	State        SessionState
	BornOn       string // replica that created the session
	LastWriter   string // replica that last wrote the session
	WriterClass  string
	BornClass    string
	CartRev      int
	// Trail is the last few replicas that served this browser, oldest first,
	// this page's replica last. The browser keeps it in a cookie, so it
	// survives when the session does not.
	Trail []TrailStop
	// Home is the replica that handed this browser its session token, as the
	// browser remembers it; set only when the session is unknown here.
	Home      string
	HomeClass string
	// Trouble names what is wrong with the session store when State is
	// SessionUnavailable ("session store out of memory", ...).
	Trouble string
}

// TrailStop is one replica in the ribbon's trail.
type TrailStop struct {
	Replica    string
	ColorClass string
}

// Page is what every page's layout needs.
type Page struct {
	Title     string
	Ribbon    Ribbon
	Flash     string
	CartCount int
	// CartUnavailable is set when the session store did not answer: the page
	// still renders, with a notice instead of a cart.
	CartUnavailable bool
	// StoreTrouble says why, in a sentence, for the notice.
	StoreTrouble string
	// Account is the logged-in account's email, or "".
	Account string
	// Refresh, when set, reloads the page after that many seconds (a
	// receipt being prepared).
	Refresh string
	// Live is how live updates reach this page (static/live.js over GET
	// /events): "local" (this replica's only) or "redis" (every
	// replica's); "" shows no live line.
	Live string
}

// Category is one entry of the catalog's category menu.
type Category struct {
	Slug, Name string
	Current    bool
}

// Product is a product as pages show it.
type Product struct {
	ID                      int64
	Slug, Name, Description string
	Price                   string
	Stock                   int
	Category, CategorySlug  string
	ImageURL                string
	URL                     string
}

// CatalogView is the catalog page.
type CatalogView struct {
	Page
	// Body is CatalogBody, rendered once per category and cart availability.
	Body templ.Component
}

// CatalogContent is what the catalog page shows inside the layout, the same
// for every visitor.
type CatalogContent struct {
	Categories []Category
	Heading    string
	Products   []Product
	// WithCart shows the add-to-cart forms (off while the store is away).
	WithCart bool
	// AddKey starts each add form's idempotency key; the shop renders the
	// body once with a placeholder here and puts each page's own key in.
	AddKey string
}

// ProductView is a product page.
type ProductView struct {
	Page
	Product  Product
	Quantity string
	Error    string // a field error for quantity, shown beside the form
	// AddKey is the add form's idempotency key: the same form sent twice
	// adds once.
	AddKey string
	// Reviews are the newest reviews, newest first.
	Reviews []Review
	// ReviewForm is the review form as posted (a 422), or empty.
	ReviewForm ReviewForm
	// PhotosWhere says where review photos live, for the form's note.
	PhotosWhere string
}

// Review is one review as the product page shows it.
type Review struct {
	Author string // the account's email, or "a shopper"
	Rating int
	Stars  string // "★★★★☆"
	Body   string
	When   string
	Photo  *ReviewPhoto // nil without a photo
}

// ReviewPhoto is a review's photo. When Missing is set the page shows a
// placeholder saying it instead of the image: the photo is on another
// replica's disk, lost, or the object store is not answering.
type ReviewPhoto struct {
	URL           string
	Width, Height int
	Missing       string
}

// ReviewForm is the review form's values and field errors (rating, body,
// photo).
type ReviewForm struct {
	Rating string
	Body   string
	Errors map[string]string
}

// CartLine is one line of the cart page or an order.
type CartLine struct {
	ProductID int64
	Name      string
	URL       string
	ImageURL  string
	Quantity  int
	Price     string
	LineTotal string
	Note      string // the shopper's gift note, kept in the session
}

// CartView is the cart page.
type CartView struct {
	Page
	Lines []CartLine
	Count int
	Total string
	Error string
}

// CheckoutForm is the checkout form's values and field errors.
type CheckoutForm struct {
	Name, Email, Address string
	IdempotencyKey       string
	Errors               map[string]string
}

// CheckoutView is the checkout page.
type CheckoutView struct {
	Page
	Lines []CartLine
	Count int
	Total string
	Form  CheckoutForm
}

// OrderView is an order's confirmation page.
type OrderView struct {
	Page
	ID       string
	Name     string
	Email    string
	Address  string
	Lines    []CartLine
	Total    string
	Replica  string
	PlacedAt string
	Receipt  ReceiptInfo
}

// ErrorView is a status page: 404, 413, 422, 503 and friends.
type ErrorView struct {
	Page
	Status  int
	Heading string
	Message string
	// Links are where to look next (the order that may exist).
	Links []ErrorLink
}

// ErrorLink is a link on a status page.
type ErrorLink struct {
	Text, URL string
}

// AuthView is the login or the register page.
type AuthView struct {
	Page
	Register bool
	Email    string
	Errors   map[string]string
}

// OrderSummary is one order in an account's history.
type OrderSummary struct {
	ID, URL, Total, PlacedAt, Replica string
	Items                             int
}

// AccountView is the account page.
type AccountView struct {
	Page
	Email  string
	Orders []OrderSummary
}

// SessionKey is one raw key of a session, as the inspector shows it.
type SessionKey struct {
	Name  string
	Bytes int    // size of its stored JSON value
	Value string // the stored JSON, shortened
}

// StoreStory is what would happen to the session if this replica died, for
// one session store.
type StoreStory struct {
	Store   string
	Current bool // the store this replica uses
	Text    string
}

// Risk is one kind of trouble and what it would do to the session.
type Risk struct {
	Event string
	Text  string
}

// InspectorView is /session: the session as this replica sees it.
type InspectorView struct {
	Page
	Replica   string
	Store     string
	Lives     Lives
	Where     string // names a shared store ("Redis")
	State     SessionState
	Token     string // shortened, never whole
	SentToken string // the browser's cookie, shortened, when it differs from Token
	TTL       string
	Expires   string
	SizeBytes int
	Size      string // what the store holds, in words
	Key       string // which key sealed the session, where keys matter
	Dropped   string // why the session the browser sent was not used
	Keys      []SessionKey
	Lock      string
	// NearCache says whether this answer came from the replica's near-cache,
	// and how the cache stays honest; "" without one.
	NearCache  string
	Renewed    string // why the token was last renewed ("login"), or ""
	Born       string
	BornAt     string
	LastWriter string
	Stories    []StoreStory
	// Risks are what other trouble would do to this session: a Redis
	// outage, a change of keys, a logout.
	Risks       []Risk
	Trail       []TrailStop
	Home        string // see Ribbon.Home
	ClientState string // what the browser's own cookies hold, explained
	// Capacity says what bounds the store's sessions, and what happens past
	// the bound.
	Capacity string
	// HomeDiffers explains why session_home names another replica than
	// Born; "" when they agree or there is no session_home.
	HomeDiffers string
	// Route is the sticky shop_route cookie's replica under sticky routing
	// ("" otherwise); RouteText explains it.
	Route, RouteText string
	// Outage explains why the session could not be read (the page is then
	// a 503); "" when it was.
	Outage string
	// Photos says where review photos live and what this replica holds of
	// them (the uploads state's description).
	Photos string
}

// ClusterMember is one replica as /cluster shows it.
type ClusterMember struct {
	Name       string
	ColorClass string
	Addr       string
	Store      string
	StartedAt  string
	Ready      bool
	Self       bool
	ExpiresIn  string // how long its announcement lives without a refresh
	// Gone: its announcement expired or was withdrawn GoneFor ago; the row
	// stays 30 s so a class sees the replica go.
	Gone    bool
	GoneFor string
}

// ClusterView is /cluster: the replicas this replica can tell about.
type ClusterView struct {
	Page
	Replica string
	Store   string
	Lives   Lives
	// Shared is set when the replicas share a Redis to meet in.
	Shared  bool
	Members []ClusterMember
	// Error is set when the announcements could not be read.
	Error string
	// Redis is the Redis tier as the sentinels describe it; nil without
	// Sentinel.
	Redis *RedisTier
	// Photos says where review photos live, as on /session.
	Photos string
	// AddressesHidden: the client is outside the shop's own networks, and
	// every address on the page was replaced.
	AddressesHidden bool
}

// RedisTier is Redis under Sentinel, as /cluster shows it.
type RedisTier struct {
	Master       string // the name the sentinels monitor
	Primary      string // address; "" when unknown
	Replicas     []RedisNode
	Sentinels    []string
	LastFailover string // "127.0.0.1:1 → 127.0.0.1:2 at 10:31:02", or ""
	// LastFailoverAt is LastFailover without the addresses: "at 10:31:02".
	LastFailoverAt string
	Error          string // the sentinels did not answer: what is shown is what this replica last heard
}

// RedisNode is one Redis replica.
type RedisNode struct {
	Addr string
	Up   bool
}

// ReceiptInfo is the state of an order's receipt as the order page shows it.
type ReceiptInfo struct {
	State  string // pending, ready, failed or lost
	Note   string // where the job or its result is, in a sentence
	Reason string // failed or lost: why
	URL    string // the receipt's address
	// Reloads says that the page reloads by itself while pending.
	Reloads bool
	// Confirmation is the customer's confirmation message, shown to that
	// customer only.
	Confirmation *Confirmation
}

// Confirmation is a message the shop sent a customer.
type Confirmation struct {
	To, Subject, Body, SentBy, At string
}

// ReceiptStatusView is the receipt route's page while no receipt is there.
type ReceiptStatusView struct {
	Page
	OrderID string
	Receipt ReceiptInfo
}

// ReceiptDocView is the stored receipt page of an order.
type ReceiptDocView struct {
	ID       string
	Name     string
	Address  string
	Lines    []CartLine
	Total    string
	Replica  string // took the order
	MadeBy   string // made the receipt
	PlacedAt string
}

// OutboxView is the outbox page: staff messages only.
type OutboxView struct {
	Page
	Schedule     string // local or shared
	ScheduleNote string
	Every        string
	Messages     []OutboxMessage
}

// OutboxMessage is one staff message as the outbox shows it.
type OutboxMessage struct {
	Kind, Period, SentBy, At, Subject, Body string
}
