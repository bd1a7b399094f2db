-- Queue summaries count the reviews closed since a time.
CREATE INDEX reviews_closed ON reviews (decided_at);
