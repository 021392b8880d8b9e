-- NATS credentials issued to agents (`agent enroll`) and their revocations (`agent revoke`).
-- The account JWT pushed to nats-server lists every revoked key that has not expired yet.
-- Never edit once landed: add a new migration.
CREATE TABLE agent_credentials (
    user_key     text PRIMARY KEY,
    agent_id     text NOT NULL,
    signing_key  text NOT NULL,
    issued_at    timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz
);
-- One credential in force per agent; enrolling again replaces (revokes) the previous one.
CREATE UNIQUE INDEX agent_credentials_current ON agent_credentials (agent_id)
    WHERE revoked_at IS NULL;
