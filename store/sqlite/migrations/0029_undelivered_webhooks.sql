-- Webhooks adaptflow gave up delivering, kept to be redelivered; see
-- store.UndeliveredWebhook. Times are micros; redelivered_at is NULL
-- while the webhook is pending.
CREATE TABLE undelivered_webhooks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    process         TEXT NOT NULL,
    instance_id     TEXT NOT NULL,
    event           TEXT NOT NULL,
    url             TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    error           TEXT NOT NULL,
    failed_at       INTEGER NOT NULL,
    redelivered_at  INTEGER,
    redelivered_by  TEXT NOT NULL DEFAULT '',
    UNIQUE (idempotency_key, url)
);
CREATE INDEX undelivered_webhooks_instance ON undelivered_webhooks (instance_id);
CREATE INDEX undelivered_webhooks_process ON undelivered_webhooks (process, id);
CREATE INDEX undelivered_webhooks_pending ON undelivered_webhooks (process) WHERE redelivered_at IS NULL;
