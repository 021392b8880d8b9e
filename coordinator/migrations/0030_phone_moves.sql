-- A phone changes agent only when it is really moved (seen by the new agent, gone from the old
-- one beyond the offline window, or the old agent offline) or an operator moves it. Every move
-- is recorded; a claim by another agent waits in phone_claims until it may be settled.

-- When the holding agent's inventory stopped naming the phone (NULL while it names it).
ALTER TABLE phones ADD COLUMN absent_since timestamptz;

CREATE TABLE phone_moves (
    id              bigserial PRIMARY KEY,
    phone_id        text NOT NULL,
    from_agent_id   text,
    to_agent_id     text NOT NULL,
    reason          text NOT NULL
                    CHECK (reason IN ('first_seen', 'holder_gone', 'holder_offline', 'operator')),
    -- 'inventory', or the role of the operator's key.
    moved_by        text NOT NULL,
    note            text,
    moved_at        timestamptz NOT NULL
);
CREATE INDEX phone_moves_phone ON phone_moves (phone_id, id);

-- The latest report of a phone by an agent that does not hold it (one row per claimant).
CREATE TABLE phone_claims (
    phone_id                text NOT NULL,
    agent_id                text NOT NULL,
    serial                  text,
    port_path               text,
    transport               text,
    state                   text NOT NULL,
    model                   text,
    android_version         text,
    battery_level           integer,
    temperature_c           real,
    storage_free_bytes      bigint,
    screen_state            text,
    app_version             text,
    current_queue_item_id   uuid,
    claimed_at              timestamptz NOT NULL,
    reported_at             timestamptz NOT NULL,
    PRIMARY KEY (phone_id, agent_id)
);
CREATE INDEX phone_claims_agent ON phone_claims (agent_id);
