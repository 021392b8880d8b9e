-- Phonefarm coordinator schema, version 1. Never edit once landed: add a new migration.

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    -- SHA-256 of the whole token. Tokens are 32 random bytes, so a fast hash is enough.
    key_hash    bytea NOT NULL UNIQUE,
    -- First characters of the token, shown by `api-key list` to tell keys apart.
    prefix      text NOT NULL,
    role        text NOT NULL CHECK (role IN ('integrator', 'operator', 'admin')),
    system      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE agents (
    agent_id        text PRIMARY KEY,
    version         text,
    host            text,
    started_at      timestamptz,
    last_seen_at    timestamptz,
    online          boolean NOT NULL DEFAULT false,
    phone_count     integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE phones (
    phone_id                text PRIMARY KEY,
    serial                  text,
    agent_id                text,
    port_path               text,
    label                   text,
    attended                boolean NOT NULL DEFAULT false,
    enabled                 boolean NOT NULL DEFAULT true,
    state                   text NOT NULL DEFAULT 'offline'
                            CHECK (state IN ('online', 'unauthorized', 'offline', 'busy', 'needs_attention')),
    model                   text,
    android_version         text,
    battery_level           integer,
    temperature_c           real,
    storage_free_bytes      bigint,
    screen_state            text,
    app_version             text,
    current_queue_item_id   uuid,
    last_seen_at            timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    account_id          text PRIMARY KEY,
    phone_id            text REFERENCES phones (phone_id),
    platform_username   text,
    active              boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_phone ON accounts (phone_id) WHERE active;

CREATE TABLE capabilities (
    name                text PRIMARY KEY,
    manual              boolean NOT NULL,
    unattended          boolean NOT NULL,
    live_verified       boolean NOT NULL,
    routings            text[] NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO capabilities (name, manual, unattended, live_verified, routings) VALUES
    ('keyword_warmup', true, true, true,  ARRAY['direct', 'queue', 'group']),
    ('fyp_warmup',     true, false, false, ARRAY['direct', 'queue', 'group']),
    ('maintenance',    true, true, true,  ARRAY['direct', 'queue']);

-- The public object. Idempotency is the unique key (process_type, system, request_id): the
-- creating INSERT ... ON CONFLICT DO NOTHING decides, so concurrent duplicates yield one row.
CREATE TABLE processes (
    process_id          uuid PRIMARY KEY,
    process_type        text NOT NULL,
    request_id          text NOT NULL,
    system              text NOT NULL,
    mode                text NOT NULL,
    status              text NOT NULL
                        CHECK (status IN ('queued', 'executing', 'retrying', 'completed', 'failed_terminal', 'cancelled')),
    target              jsonb NOT NULL,
    inputs              jsonb NOT NULL,
    requested_by        jsonb NOT NULL,
    callback            jsonb NOT NULL,
    fingerprint         bytea NOT NULL,
    result              jsonb NOT NULL DEFAULT '{}',
    error               jsonb,
    partial_progress    jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL,
    accepted_at         timestamptz,
    queued_at           timestamptz,
    executing_at        timestamptz,
    retrying_at         timestamptz,
    cancel_requested_at timestamptz,
    finished_at         timestamptz,
    cancel_strategy     text,
    cancel_reason       text,
    cancel_force_at     timestamptz,
    -- Callback sequence counter: bumped once per emitted process.updated event.
    version             bigint NOT NULL DEFAULT 0,
    UNIQUE (process_type, system, request_id)
);
CREATE INDEX processes_newest ON processes (created_at DESC, process_id DESC);
CREATE INDEX processes_system_newest ON processes (system, created_at DESC, process_id DESC);

CREATE TABLE queue_items (
    queue_item_id       uuid PRIMARY KEY,
    process_id          uuid REFERENCES processes (process_id),
    kind                text NOT NULL
                        CHECK (kind IN ('keyword_warmup', 'fyp_warmup', 'maintenance', 'post_video')),
    state               text NOT NULL
                        CHECK (state IN ('QUEUED', 'SCHEDULED', 'PLANNED', 'CLAIMED', 'EXECUTING', 'RETRYABLE',
                                         'DONE', 'PARTIAL', 'DEAD_LETTER', 'CANCELLED')),
    mode                text NOT NULL,
    routing             text NOT NULL,
    -- Pinned phone for direct routing; for queue routing it is resolved at claim time.
    phone_id            text,
    account_id          text,
    inputs              jsonb NOT NULL,
    attempt             integer NOT NULL DEFAULT 0,
    max_attempts        integer NOT NULL DEFAULT 3,
    scheduled_at        timestamptz,
    next_attempt_at     timestamptz,
    lease_expires_at    timestamptz,
    agent_id            text,
    run_id              uuid,
    -- Legacy /ingest fields.
    content_id          text,
    callback_url        text,
    metadata            jsonb NOT NULL DEFAULT '{}',
    result              jsonb,
    error               jsonb,
    cancel_requested_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz
);
CREATE INDEX queue_items_process ON queue_items (process_id);
CREATE UNIQUE INDEX queue_items_ingest_key ON queue_items (account_id, content_id) WHERE content_id IS NOT NULL;
CREATE INDEX queue_items_pending ON queue_items (state, scheduled_at) WHERE state IN ('QUEUED', 'SCHEDULED', 'RETRYABLE');

-- Every milestone and state change of a queue item. Replays are no-ops thanks to the unique key.
CREATE TABLE queue_item_events (
    id              bigserial PRIMARY KEY,
    queue_item_id   uuid NOT NULL REFERENCES queue_items (queue_item_id),
    attempt         integer NOT NULL,
    seq             bigint NOT NULL,
    kind            text NOT NULL,
    at              timestamptz NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}',
    UNIQUE (queue_item_id, attempt, seq)
);

-- NATS messages written in the same transaction as the state change that causes them.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    subject         text NOT NULL,
    msg_id          text NOT NULL UNIQUE,
    payload         bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Signed HTTP callbacks (process.updated and legacy queue_item.updated), delivered at least once.
CREATE TABLE callback_deliveries (
    id              bigserial PRIMARY KEY,
    event_id        uuid NOT NULL UNIQUE,
    event_type      text NOT NULL,
    process_id      uuid,
    queue_item_id   uuid,
    sequence        bigint,
    url             text NOT NULL,
    -- The exact bytes sent (and signed) on every attempt.
    body            text NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX callback_deliveries_due ON callback_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX callback_deliveries_process ON callback_deliveries (process_id, sequence);

CREATE TABLE callback_attempts (
    id              bigserial PRIMARY KEY,
    delivery_id     bigint NOT NULL REFERENCES callback_deliveries (id),
    attempt         integer NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    status_code     integer,
    error           text,
    duration_ms     integer NOT NULL
);
CREATE INDEX callback_attempts_delivery ON callback_attempts (delivery_id);

CREATE TABLE runtime_snapshots (
    account_id          text PRIMARY KEY,
    ugc_account_id      text NOT NULL,
    snapshot_id         text NOT NULL,
    strategy_version    bigint NOT NULL,
    content_hash        text NOT NULL,
    strategy_synced_at  timestamptz NOT NULL,
    stage               text NOT NULL,
    active_action       text NOT NULL,
    active_skills       jsonb NOT NULL,
    personality         jsonb NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE flow_packs (
    app_package     text NOT NULL,
    version         text NOT NULL,
    body            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_package, version)
);
