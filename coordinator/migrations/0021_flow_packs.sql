-- Signed flow packs published to the fleet (`flowpack publish`), and what each agent reports it
-- runs and refused (`pf.evt.<agent>.packs`). Never edit once landed: add a new migration.
CREATE TABLE flow_pack_publications (
    name          text NOT NULL,
    revision      integer NOT NULL,
    sha256        text NOT NULL,
    signer        text NOT NULL,
    kv_revision   bigint NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, revision)
);

-- The latest report of each agent (reports of one process carry increasing seq; at is the
-- agent's wall clock).
CREATE TABLE agent_flow_packs (
    agent_id     text PRIMARY KEY,
    report_at    timestamptz NOT NULL,
    report_seq   bigint NOT NULL,
    running      jsonb NOT NULL,
    rejected     jsonb NOT NULL
);
