package web

// What is wrong with the session store, named for what it is: a Redis
// that is out of memory or refuses our password answers, so "not
// answering" would send an operator looking in the wrong place.

import (
	"errors"

	"github.com/statelab/shop/internal/redisclient"
	"github.com/statelab/shop/session"
)

// lockBusyText is what a write that could not get its session's lock says.
const lockBusyText = "Another request on this session holds its lock (another tab, or a double click), so this change was not made. " +
	"The session store is fine. Try again in a moment."

// storeTrouble names the session store's trouble in err: short for the
// ribbon, logs and /readyz, long for the page's notice.
func storeTrouble(err error) (short, long string) {
	switch {
	case errors.Is(err, session.ErrLockTimeout):
		return "session busy", lockBusyText
	case errors.Is(err, redisclient.ErrOutOfMemory):
		return "session store out of memory",
			"Redis, the session store, is out of memory (maxmemory reached with the noeviction policy) and refuses every write, " +
				"so your cart cannot be changed right now; nothing was changed. You can keep browsing; writes work again once Redis has room."
	case errors.Is(err, redisclient.ErrAuth):
		return "session store refused our password",
			"Redis, the session store, refused this replica's password (NOAUTH or WRONGPASS), so your cart cannot be read or changed here. " +
				"Nothing in Redis is lost: the operator must give this replica the right -redis-password."
	}
	return "session store not answering",
		"The session store is not answering this replica. You can keep browsing; the cart comes back by itself when the store does."
}
