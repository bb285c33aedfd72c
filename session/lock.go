package session

// The session's write lock has one owner: the Session that a write loaded.
// A store takes it in Load and hands it over; from then on Session.Release
// is the only code that frees it. A commit whose own round trip carried the
// unlock (the redis store's) only marks it so, and Release then has
// nothing left to do: Save, the durable commit and the middleware no
// longer each free it their own way.

// Lock is a session's write lock as its holder keeps it. Like the Session
// that holds it, it belongs to one request.
type Lock struct {
	// key and value name a Redis lock, so that a commit can carry its
	// release in its own round trip; "" for an in-process lock.
	key, value string
	free       func() // frees the lock
	done       bool   // freed, by free or by a commit that carried it
}

// release frees the lock unless that already happened. It is safe on a
// nil Lock.
func (l *Lock) release() {
	if l == nil || l.done {
		return
	}
	l.done = true
	l.free()
}

// carried records that a commit's own round trip released the lock.
func (l *Lock) carried() {
	if l != nil {
		l.done = true
	}
}

// held reports whether the lock still has to be released.
func (l *Lock) held() bool { return l != nil && !l.done }
