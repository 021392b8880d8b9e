-- Operators' phone actions (reboot, locate) and what became of them: written when the order
-- goes into the outbox (state 'sent'), then updated from the agent's reports on
-- pf.evt.<agent_id>.ops (started or refused, then done or failed). The console's phone page
-- shows the latest ones, so an action the agent refused is not silently lost.
CREATE TABLE phone_actions (
    request_id      uuid PRIMARY KEY,
    phone_id        text NOT NULL,
    agent_id        text NOT NULL,
    action          text NOT NULL CHECK (action IN ('reboot', 'locate')),
    requested_by    text NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    state           text NOT NULL DEFAULT 'sent'
                    CHECK (state IN ('sent', 'started', 'refused', 'done', 'failed')),
    reason          text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX phone_actions_phone ON phone_actions (phone_id, requested_at DESC);
