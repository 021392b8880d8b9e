-- The console's failures page reads the failed runs of the last 24 h. Without this index it
-- scanned every event ever recorded (13 ms at 134,000 events, growing with the history); with
-- it, only the failed `finished` events of the window. Small: one entry per failed run.
CREATE INDEX queue_item_events_failed_runs ON queue_item_events (at)
    WHERE kind = 'finished' AND payload->>'outcome' = 'failed';
