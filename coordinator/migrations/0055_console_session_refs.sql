-- A console session's public handle: the sessions page names a session by it (to revoke it)
-- and never by its id or the id's hash.
ALTER TABLE console_sessions ADD COLUMN ref bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX console_sessions_ref ON console_sessions (ref);
