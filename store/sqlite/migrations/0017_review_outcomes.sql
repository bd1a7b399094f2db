-- Process KPIs sum the reviews of a process's instances started in a window.
CREATE INDEX reviews_process_time ON reviews (process, created_at);
