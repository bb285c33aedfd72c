-- The first schema: catalog, stock, orders, accounts and saved carts.
-- Times are TEXT in UTC with fixed-width nanoseconds so that they sort as text.

CREATE TABLE categories (
	id   INTEGER PRIMARY KEY,
	slug TEXT NOT NULL UNIQUE,
	name TEXT NOT NULL
) STRICT;

CREATE TABLE products (
	id          INTEGER PRIMARY KEY,
	slug        TEXT NOT NULL UNIQUE,
	name        TEXT NOT NULL,
	description TEXT NOT NULL,
	price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
	-- The CHECK is the last line against overselling: a bug that decrements
	-- past zero aborts its transaction instead of selling what is not there.
	stock       INTEGER NOT NULL CHECK (stock >= 0),
	category_id INTEGER NOT NULL REFERENCES categories (id)
) STRICT;

CREATE INDEX products_category_id ON products (category_id);

CREATE TABLE accounts (
	id            INTEGER PRIMARY KEY,
	-- NOCASE: Ann@Example.com and ann@example.com are one person.
	email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
	password_hash BLOB NOT NULL,
	created_at    TEXT NOT NULL
) STRICT;

-- orders keeps its rowid so that insertion order breaks ties between orders
-- created in the same nanosecond.
CREATE TABLE orders (
	id              TEXT PRIMARY KEY,
	-- UNIQUE is what makes a replayed checkout safe across replica processes:
	-- whichever transaction inserts the key first wins, the others fail here.
	idempotency_key TEXT NOT NULL UNIQUE,
	session_id      TEXT NOT NULL,
	account_id      INTEGER REFERENCES accounts (id), -- NULL: anonymous
	replica         TEXT NOT NULL,
	name            TEXT NOT NULL,
	email           TEXT NOT NULL,
	address         TEXT NOT NULL,
	created_at      TEXT NOT NULL
) STRICT;

CREATE INDEX orders_account_id ON orders (account_id, created_at);

-- Lines copy slug, name and price so that an order reads the same after the
-- catalog changes.
CREATE TABLE order_lines (
	order_id    TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
	line        INTEGER NOT NULL,
	product_id  INTEGER NOT NULL REFERENCES products (id),
	slug        TEXT NOT NULL,
	name        TEXT NOT NULL,
	quantity    INTEGER NOT NULL CHECK (quantity > 0),
	price_cents INTEGER NOT NULL,
	PRIMARY KEY (order_id, line)
) STRICT;

CREATE INDEX order_lines_product_id ON order_lines (product_id);

CREATE TABLE saved_carts (
	account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
	data       BLOB NOT NULL,
	updated_at TEXT NOT NULL
) STRICT;
