-- 0006: routing answers (stats' "routing" section) read the selections a router recorded
-- (source = 'litellm'); a partial index keeps their cost proportional to those rows, not to
-- the whole table.
CREATE INDEX IF NOT EXISTS idx_provider_selection_events_router_selected_at
    ON provider_selection_events (selected_at)
    WHERE source = 'litellm';
