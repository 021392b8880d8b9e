-- NATS dispatch, ingest and fleet mirror (the bus). Never edit once landed: add a new migration.

-- One run per phone at a time, enforced by the database as well as by the dispatcher.
CREATE UNIQUE INDEX queue_items_one_run_per_phone ON queue_items (phone_id)
    WHERE state IN ('CLAIMED', 'EXECUTING') AND phone_id IS NOT NULL;
-- The dispatcher's scan of dispatchable items, oldest first.
CREATE INDEX queue_items_dispatchable ON queue_items (created_at)
    WHERE state IN ('QUEUED', 'SCHEDULED', 'RETRYABLE');
-- The sweeper's scan of leases.
CREATE INDEX queue_items_leases ON queue_items (lease_expires_at)
    WHERE state IN ('CLAIMED', 'EXECUTING');

-- Fleet mirror: what the agent last reported, so unchanged reports write nothing.
ALTER TABLE agents ADD COLUMN enrolled_at timestamptz;
ALTER TABLE agents ADD COLUMN inventory_seq bigint;
ALTER TABLE agents ADD COLUMN inventory_at timestamptz;
ALTER TABLE agents ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE phones ADD COLUMN transport text;
CREATE INDEX phones_agent ON phones (agent_id);

-- Outbox bookkeeping for the relay.
ALTER TABLE outbox ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error text;

-- Wake the dispatcher and the relay of every replica when work or messages are written
-- (statement-level: one notification per statement, coalesced per transaction by Postgres).
CREATE FUNCTION pf_notify_dispatch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pf_dispatch', '');
    RETURN NULL;
END $$;
CREATE TRIGGER queue_items_notify_dispatch AFTER INSERT ON queue_items
    FOR EACH STATEMENT EXECUTE FUNCTION pf_notify_dispatch();

CREATE FUNCTION pf_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pf_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION pf_notify_outbox();
