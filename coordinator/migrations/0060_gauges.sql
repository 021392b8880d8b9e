-- The operators' gauges on /metrics (db::gauges) count the open queue states, the dead-lettered
-- items and the callbacks given up on at every scrape. These partial indexes hold only those
-- rows, so a count reads an index a few pages long instead of the whole history.
CREATE INDEX queue_items_open_states ON queue_items (state)
    WHERE state IN ('QUEUED', 'SCHEDULED', 'PLANNED', 'RETRYABLE', 'CLAIMED', 'EXECUTING', 'DEAD_LETTER');
CREATE INDEX callback_deliveries_failed ON callback_deliveries (id) WHERE state = 'failed';
