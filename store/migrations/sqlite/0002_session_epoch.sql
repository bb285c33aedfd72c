-- An account's session epoch: logout and a password change raise it, and a
-- sealed cookie session that carries an older one is anonymous. Revocation
-- of a session that no server keeps needs this much state on the server.
ALTER TABLE accounts ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
