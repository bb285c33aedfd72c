package web

// GET /session: the session inspector. It shows the session exactly as this
// replica sees it, so that two reloads served by two replicas tell the whole
// stateful-versus-stateless story side by side.

import (
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
	if err != nil {
		return err
	}
	sess := sessionOf(ctx).sess
	v := templates.InspectorView{
		Replica: s.cfg.Replica,
		Store:   s.sessions.Kind(),
		State:   templates.SessionNone,
	}
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
