-- Work that outlives a request (issue 20): the receipt a background job made
-- for an order, and the outbox, a development mailbox of the messages the
-- shop sends (customers' confirmations, staff's low-stock reports).

-- One receipt per order, whoever made it: a job that is retried, or rescued
-- from a replica that died mid-run, finds the row and sends nothing twice.
CREATE TABLE receipts (
	order_id TEXT PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
	state    TEXT NOT NULL CHECK (state IN ('ready', 'failed')),
	html     TEXT NOT NULL, -- the rendered receipt page; '' when failed
	reason   TEXT NOT NULL, -- why it could not be made; '' when ready
	made_by  TEXT NOT NULL, -- the replica whose job wrote this row
	attempts INTEGER NOT NULL,
	made_at  TEXT NOT NULL
) STRICT;

-- dedup_key is what makes a message go out once: a confirmation is keyed by
-- its order, a shared schedule's report by its period, a local schedule's by
-- its period and replica (so N replicas send N: the lesson).
CREATE TABLE outbox (
	id        INTEGER PRIMARY KEY,
	dedup_key TEXT NOT NULL UNIQUE,
	kind      TEXT NOT NULL,
	recipient TEXT NOT NULL,
	order_id  TEXT REFERENCES orders (id) ON DELETE CASCADE, -- NULL: not about an order
	period    TEXT NOT NULL, -- '' when not periodic
	subject   TEXT NOT NULL,
	body      TEXT NOT NULL,
	sent_by   TEXT NOT NULL,
	at        TEXT NOT NULL
) STRICT;

CREATE INDEX outbox_kind_at ON outbox (kind, at);
CREATE INDEX outbox_order_id ON outbox (order_id);
