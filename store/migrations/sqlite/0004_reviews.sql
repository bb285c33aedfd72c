-- Product reviews, some with a photo. The photo itself is not here: it is
-- a file on one replica's disk or an object in a bucket, and the row says
-- which, so that a replica without the file can say whose disk it is on.
CREATE TABLE reviews (
	id            INTEGER PRIMARY KEY,
	product_id    INTEGER NOT NULL REFERENCES products (id),
	account_id    INTEGER REFERENCES accounts (id), -- NULL: anonymous
	author        TEXT NOT NULL,                    -- the account's email, or ''
	rating        INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
	body          TEXT NOT NULL,
	-- NULL without a photo. UNIQUE: one object belongs to one review.
	photo_key     TEXT UNIQUE,
	-- 'disk' or 's3': where the photo was put.
	photo_store   TEXT,
	-- The replica whose disk holds a 'disk' photo; '' for 's3'.
	photo_replica TEXT NOT NULL DEFAULT '',
	photo_width   INTEGER NOT NULL DEFAULT 0,
	photo_height  INTEGER NOT NULL DEFAULT 0,
	replica       TEXT NOT NULL, -- the replica that wrote the review
	created_at    TEXT NOT NULL
) STRICT;

CREATE INDEX reviews_product_id ON reviews (product_id, id);
