package web

// GET /session: the session inspector. It shows the session exactly as this
// replica sees it, so that two reloads served by two replicas tell the whole
// stateful-versus-stateless story side by side.

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/statelab/shop/session"
	"github.com/statelab/shop/templates"
)

// handleSessionInspector shows the session as this replica sees it. It only
// reads: showing a session must not change it.
func (s *Server) handleSessionInspector(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	info, err := s.session(ctx)
	if errors.Is(err, ErrSessionStore) {
		return s.inspectorOutage(w, r, err)
	}
	if err != nil {
		return err
	}
	sess := sessionOf(ctx).sess
	v := templates.InspectorView{
		Replica: s.cfg.Replica,
		Store:   s.sessions.Kind(),
		State:   templates.SessionNone,
		Photos:  s.photosText(r.Context()),
	}
	v.Lives, v.Where = s.lives()
	sent := sessionCookie(r)
	switch {
	case info.Known:
		v.State = templates.SessionKnown
	case info.HadCookie:
		v.State = templates.SessionUnknown
		v.SentToken = shortToken(sent)
		v.Home = s.homeOf(r)
	}
	d := s.sessions.Describe(ctx, sess, s.cfg.Replica)
	if info.Known {
		v.Token = shortToken(sess.Token())
		v.Born, v.BornAt, v.LastWriter = info.Born, info.BornAt, info.LastWriter
		v.Renewed = sess.Renewed()
		v.TTL = formatTTL(d.TTL)
		v.Expires = sess.Deadline().UTC().Format("2006-01-02 15:04 MST")
		for _, f := range sess.Fields() {
			v.Keys = append(v.Keys, templates.SessionKey{Name: f.Name, Bytes: len(f.JSON), Value: truncate(string(f.JSON), 160)})
		}
		v.SizeBytes, v.Size, v.Key = d.SizeBytes, d.Size, d.Key
	}
	if home := s.homeOf(r); info.Known && home != "" && home != info.Born {
		v.HomeDiffers = homeDiffersText(session.TraitsOf(s.sessions), info.Born, home)
	}
	v.Capacity = d.Capacity
	v.Route, v.RouteText = s.routeText(r)
	v.Dropped = sess.Dropped()
	v.Lock = d.Lock
	v.Risks = []templates.Risk{
		{Event: "If Redis went away", Text: d.RedisOutage},
		{Event: "If the keys changed", Text: d.KeyChange},
		{Event: "If you logged out", Text: d.Logout},
	}
	v.NearCache = d.NearCache
	v.Stories = s.deathStories(d.ReplicaDeath)
	trail := trailOf(ctx)
	for _, name := range trail {
		v.Trail = append(v.Trail, templates.TrailStop{Replica: name, ColorClass: replicaColorClass(name)})
	}
	v.ClientState = clientStateText(trail, s.homeOf(r))
	v.Page = s.page(r, "Your session")
	s.clearFlash(w, r)
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, http.StatusOK, templates.InspectorPage(v))
	return nil
}

// inspectorOutage is /session while the store does not answer: still a
// 503, but one that explains the outage where the session would be.
func (s *Server) inspectorOutage(w http.ResponseWriter, r *http.Request, err error) error {
	if r.Context().Err() != nil {
		return err // the client left: serveError logs a 499
	}
	_, trouble := storeTrouble(err)
	v := templates.InspectorView{Replica: s.cfg.Replica, Store: s.sessions.Kind(), State: templates.SessionUnavailable, Photos: s.photosText(r.Context())}
	v.Lives, v.Where = s.lives()
	v.Outage = fmt.Sprintf("%s could not read your session. %s Your session does not live in %s but in the %s store, "+
		"so no replica can read or change any session until the store answers again; nothing the store keeps is lost, and this page comes back by itself.",
		s.cfg.Replica, trouble, s.cfg.Replica, s.sessions.Kind())
	v.Lock = "unknown: the store did not answer"
	v.Stories = s.deathStories(session.ReplicaDeathStory(s.sessions.Kind(), s.cfg.Replica))
	v.Route, v.RouteText = s.routeText(r)
	trail := trailOf(r.Context())
	for _, name := range trail {
		v.Trail = append(v.Trail, templates.TrailStop{Replica: name, ColorClass: replicaColorClass(name)})
	}
	v.ClientState = clientStateText(trail, s.homeOf(r))
	v.Page = s.page(r, "Your session")
	s.log.WarnContext(r.Context(), "session inspector: store unavailable", "err", err)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", "1")
	s.render(w, r, http.StatusServiceUnavailable, templates.InspectorPage(v))
	return nil
}

// homeDiffersText says why session_home names another replica than the
// session's birthplace: both are true, of different things.
func homeDiffersText(t session.Traits, born, home string) string {
	why := "session_home records which replica last handed your browser this token, born on records where the session was first created."
	if t.Place == session.InShared {
		why = fmt.Sprintf("With sessions in %s any replica can write any session, and each write re-sends the session cookie: so the last replica to write your cart is the one session_home names, wherever the session was born.", t.Where)
	}
	return fmt.Sprintf("Your session_home cookie names %s, but the session was born on %s. Both are true: %s", home, born, why)
}

// routeText explains the sticky shop_route cookie under sticky routing;
// "" without sticky routing.
func (s *Server) routeText(r *http.Request) (route, text string) {
	if r.Header.Get("X-Shop-Sticky") != "1" {
		return "", ""
	}
	c, err := r.Cookie("shop_route")
	switch {
	case err != nil:
		return s.cfg.Replica, fmt.Sprintf("nginx routes by a shop_route cookie. Your browser had none, so nginx picked %[1]s, and this response sets shop_route=%[1]s: from now on nginx sends you to %[1]s while it is up.", s.cfg.Replica)
	case c.Value != s.cfg.Replica:
		return c.Value, fmt.Sprintf("Your shop_route cookie pins you to %[1]s, but %[2]s answered: nginx found %[1]s down and fell back to another replica. This response re-pins you to %[2]s.", truncate(c.Value, 64), s.cfg.Replica)
	}
	return c.Value, fmt.Sprintf("Your shop_route cookie pins you to %[1]s: nginx's sticky policy sends every request there while %[1]s is up, so a memory session keeps working. If %[1]s dies, nginx falls back to another replica, which re-pins you to itself.", c.Value)
}

// shortToken shows enough of a token to tell two apart and never the whole
// of it: the token is the key to the session.
func shortToken(t string) string {
	if len(t) < 12 {
		return "(none)"
	}
	return t[:6] + "…" + fmt.Sprintf(" (%d characters)", len(t))
}

func formatTTL(d time.Duration) string {
	if d <= 0 {
		return "expired"
	}
	d = d.Round(time.Second)
	h, m := int(d.Hours()), int(d.Minutes())%60
	if h > 0 {
		return fmt.Sprintf("%dh %02dm", h, m)
	}
	return d.String()
}

// deathStories explains, for each kind of store, what this replica's death
// would do to the session: the store in use tells its own, first.
func (s *Server) deathStories(current string) []templates.StoreStory {
	stories := []templates.StoreStory{{Store: s.sessions.Kind(), Text: current, Current: true}}
	for _, kind := range session.Kinds() {
		if kind != s.sessions.Kind() {
			stories = append(stories, templates.StoreStory{Store: kind, Text: session.ReplicaDeathStory(kind, s.cfg.Replica)})
		}
	}
	return stories
}

// clientStateText explains the browser's own cookies (trail.go).
func clientStateText(trail []string, home string) string {
	var b strings.Builder
	b.WriteString("Besides the session cookie, your browser keeps two small cookies of its own, which survive when a session does not. ")
	if len(trail) > 0 {
		fmt.Fprintf(&b, "The trail cookie lists which replica served each of your last requests, oldest first: %s. ", strings.Join(trail, ", "))
	}
	if home != "" {
		fmt.Fprintf(&b, "The session_home cookie says %s issued your current session token: with memory sessions, that is where your cart lives.", home)
	} else {
		b.WriteString("The session_home cookie names the replica that issued your session token; it is set with the token.")
	}
	return b.String()
}
