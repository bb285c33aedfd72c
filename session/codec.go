package session

// The stored form, and scs's Codec for it. scs keeps a session's values in
// a map[string]any and hands them to a Codec; ours writes the readable JSON
// the shop has always stored (`redis-cli GET scs:session:<token>` shows a
// student the whole session), with a known type for each key, and the
// cookie store seals the very same bytes.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The keys of a session's values, as scs holds them and the JSON names them.
const (
	keySID          = "sid"           // string: stable identity, survives token renewal; owns anonymous orders
	keyBorn         = "born"          // string: replica that created the session
	keyBornAt       = "born_at"       // string: RFC 3339
	keyWriter       = "writer"        // string: replica that last wrote it
	keyCart         = "cart"          // json.RawMessage: the cart as the web layer encodes it
	keyAccountID    = "account_id"    // string: decimal, once logged in
	keyAccountEmail = "account_email" // string: the account's address, for pages
	keyRenewed      = "renewed"       // string: why the token was last renewed
	keyEpoch        = "epoch"         // int64: the account's session epoch at login (revocation)
	// keyVer is the session's write count in a shared store. It is stored
	// beside the values, not among them (the JSON's "ver"), so Fields does
	// not list it.
	keyVer = "ver"
)

// values are a session's fields as stored: readable JSON.
type values struct {
	SID          string          `json:"sid,omitempty"`
	Born         string          `json:"born,omitempty"`
	BornAt       string          `json:"born_at,omitempty"`
	Writer       string          `json:"writer,omitempty"`
	Cart         json.RawMessage `json:"cart,omitempty"`
	AccountID    string          `json:"account_id,omitempty"`
	AccountEmail string          `json:"account_email,omitempty"`
	Renewed      string          `json:"renewed,omitempty"`
	Epoch        int64           `json:"epoch,omitempty"`
}

// encodingVersion is the stored form's version: the same bytes the shop
// stored when it used scs with its JSON codec before.
const encodingVersion = 1

type stored struct {
	V        int       `json:"v"`
	Deadline time.Time `json:"deadline"`
	Ver      int64     `json:"ver,omitempty"` // write count (shared stores)
	Values   values    `json:"values"`
}

// errUndecodable marks stored bytes that are not a session of ours.
var errUndecodable = errors.New("undecodable session data")

// encode is the stored form of a session's deadline and values.
func encode(deadline time.Time, m map[string]any) ([]byte, error) {
	st := stored{V: encodingVersion, Deadline: deadline}
	for k, v := range m {
		var ok bool
		switch k {
		case keySID:
			st.Values.SID, ok = v.(string)
		case keyBorn:
			st.Values.Born, ok = v.(string)
		case keyBornAt:
			st.Values.BornAt, ok = v.(string)
		case keyWriter:
			st.Values.Writer, ok = v.(string)
		case keyCart:
			st.Values.Cart, ok = v.(json.RawMessage)
		case keyAccountID:
			st.Values.AccountID, ok = v.(string)
		case keyAccountEmail:
			st.Values.AccountEmail, ok = v.(string)
		case keyRenewed:
			st.Values.Renewed, ok = v.(string)
		case keyEpoch:
			st.Values.Epoch, ok = v.(int64)
		case keyVer:
			st.Ver, ok = v.(int64)
		}
		if !ok {
			return nil, fmt.Errorf("session: value %q of type %T has no stored form", k, v)
		}
	}
	return json.Marshal(st)
}

// decode reads the stored form; anything else is errUndecodable.
func decode(b []byte) (deadline time.Time, m map[string]any, err error) {
	var st stored
	if err := json.Unmarshal(b, &st); err != nil || st.V != encodingVersion {
		return time.Time{}, nil, errUndecodable
	}
	return st.Deadline, st.toMap(), nil
}

// toMap is the values as scs holds them: only those that are set.
func (st stored) toMap() map[string]any {
	m := make(map[string]any, 8)
	put := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	v := st.Values
	put(keySID, v.SID)
	put(keyBorn, v.Born)
	put(keyBornAt, v.BornAt)
	put(keyWriter, v.Writer)
	if v.Cart != nil {
		m[keyCart] = v.Cart
	}
	put(keyAccountID, v.AccountID)
	put(keyAccountEmail, v.AccountEmail)
	put(keyRenewed, v.Renewed)
	if v.Epoch != 0 {
		m[keyEpoch] = v.Epoch
	}
	if st.Ver != 0 {
		m[keyVer] = st.Ver
	}
	return m
}

// codec is scs's Codec over the stored form. A store that already holds a
// session decoded (the near-cache) hands it over instead of bytes to
// decode again: a hit costs a map copy, not a JSON parse.
type codec struct {
	mu       sync.Mutex
	handoffs map[uint64]decoded
	next     uint64
}

type decoded struct {
	deadline time.Time
	values   map[string]any
}

// A handoff's bytes are handoffMark and the handoff's id, 8 bytes big
// endian. No JSON starts with 0, so stored bytes can never be taken for one.
const handoffMark = 0

// handoffTicket holds a handoff's bytes, in the request that makes it.
type handoffTicket [9]byte

// Encode is the stored form.
func (c *codec) Encode(deadline time.Time, m map[string]any) ([]byte, error) {
	return encode(deadline, m)
}

// Decode reads the stored form, or takes a handoff.
func (c *codec) Decode(b []byte) (time.Time, map[string]any, error) {
	if len(b) == len(handoffTicket{}) && b[0] == handoffMark {
		id := binary.BigEndian.Uint64(b[1:])
		c.mu.Lock()
		d, ok := c.handoffs[id]
		delete(c.handoffs, id)
		c.mu.Unlock()
		if ok {
			return d.deadline, d.values, nil
		}
		return time.Time{}, nil, errUndecodable
	}
	return decode(b)
}

// handoff registers a decoded session for the Decode of the bytes it
// writes into t and returns: scs decodes what the store's Find returned
// before Load returns. m becomes scs's to change, so it must be the
// caller's own copy.
func (c *codec) handoff(t *handoffTicket, deadline time.Time, m map[string]any) []byte {
	c.mu.Lock()
	c.next++
	id := c.next
	if c.handoffs == nil {
		c.handoffs = make(map[uint64]decoded)
	}
	c.handoffs[id] = decoded{deadline: deadline, values: m}
	c.mu.Unlock()
	t[0] = handoffMark
	binary.BigEndian.PutUint64(t[1:], id)
	return t[:]
}
