-- The operators' console (issue 20): sessions, the audit log and phone health history.

-- A signed-in operator: only the SHA-256 of the random session id is stored.
CREATE TABLE console_sessions (
    id_hash         bytea PRIMARY KEY,
    key_name        text NOT NULL,
    role            text NOT NULL CHECK (role IN ('operator', 'admin')),
    csrf_token      text NOT NULL,
    address         text,
    created_at      timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz
);
CREATE INDEX console_sessions_key ON console_sessions (key_name) WHERE revoked_at IS NULL;

-- Every operator action, from the console or the API: who (API key name), what, on what, from
-- which address.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    target      text,
    address     text,
    via         text NOT NULL CHECK (via IN ('console', 'api')),
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_newest ON audit_log (at DESC, id DESC);

-- Battery, temperature and storage over time, at most one sample a minute per phone, kept two
-- days, written by a trigger on the phones row the agents' reports update.
CREATE TABLE phone_health_samples (
    phone_id            text NOT NULL,
    at                  timestamptz NOT NULL,
    battery_level       integer,
    temperature_c       real,
    storage_free_bytes  bigint,
    PRIMARY KEY (phone_id, at)
);

CREATE FUNCTION pf_phone_health_sample() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM phone_health_samples
                   WHERE phone_id = NEW.phone_id AND at > now() - interval '1 minute') THEN
        INSERT INTO phone_health_samples (phone_id, at, battery_level, temperature_c, storage_free_bytes)
        VALUES (NEW.phone_id, now(), NEW.battery_level, NEW.temperature_c, NEW.storage_free_bytes)
        ON CONFLICT DO NOTHING;
        DELETE FROM phone_health_samples
        WHERE phone_id = NEW.phone_id AND at < now() - interval '2 days';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER phones_health_sample
    AFTER INSERT OR UPDATE OF battery_level, temperature_c, storage_free_bytes ON phones
    FOR EACH ROW
    WHEN (NEW.battery_level IS NOT NULL OR NEW.temperature_c IS NOT NULL)
    EXECUTE FUNCTION pf_phone_health_sample();
