"""Serverless auto-pause: one policy per instance (its owner's), and the webhook delivery log.

`instances.released` marks an instance paused in serverless `spot` mode whose machine went back
to the market: it no longer holds its offer (the unique index of live offers skips it), and a
wake bids for a machine again. A policy's `webhook_secret` is sealed with the server's secret
(provider/webhooks.py), never stored in clear; each delivery keeps its own sealed copy so a
retry after the policy changed still signs as when it was queued.
"""

SQL = """
ALTER TABLE instances ADD COLUMN released INTEGER NOT NULL DEFAULT 0;
DROP INDEX instances_live_offer;
CREATE UNIQUE INDEX instances_live_offer ON instances (offer_id)
    WHERE deleted_at IS NULL AND released = 0;
CREATE TABLE serverless_policies (
    instance_id INTEGER PRIMARY KEY REFERENCES instances(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    mode TEXT NOT NULL,
    idle_timeout_seconds INTEGER NOT NULL,
    gpu_threshold REAL NOT NULL,
    keep_warm INTEGER NOT NULL DEFAULT 0,
    max_price REAL,
    webhook_url TEXT,
    webhook_secret TEXT,
    enabled_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    paused_mode TEXT,
    paused_at REAL,
    paused_rate REAL,
    idle_since REAL,
    current_util REAL NOT NULL DEFAULT 0,
    util_source TEXT,
    inflight INTEGER NOT NULL DEFAULT 0,
    savings REAL NOT NULL DEFAULT 0,
    pauses INTEGER NOT NULL DEFAULT 0,
    cold_starts INTEGER NOT NULL DEFAULT 0,
    cold_start_total REAL NOT NULL DEFAULT 0,
    last_wake_error TEXT
);
CREATE INDEX serverless_policies_user ON serverless_policies (user_id, instance_id);
CREATE TABLE serverless_webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id),
    event TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    last_status INTEGER,
    last_error TEXT,
    created_at REAL NOT NULL,
    delivered_at REAL
);
CREATE INDEX serverless_webhooks_due ON serverless_webhooks (status, next_attempt_at);
CREATE INDEX serverless_webhooks_instance ON serverless_webhooks (user_id, instance_id, id)
"""
