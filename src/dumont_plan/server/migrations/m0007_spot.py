"""Spot mode (contract §8): templates, deployments, the instances each deployment had, its
interruption and failover events, and the test hook's market price overrides.

Every row belongs to one user. A template's snapshot and a deployment's synced snapshot are
files under `<data_dir>/spot/<user_id>/`; the rows name them relative to the data dir.
"""

SQL = """
CREATE TABLE spot_templates (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    instance_id INTEGER NOT NULL,
    region TEXT NOT NULL,
    gpu_name TEXT NOT NULL,
    num_gpus INTEGER NOT NULL,
    workspace_path TEXT NOT NULL,
    image TEXT NOT NULL,
    disk_size REAL NOT NULL,
    onstart_cmd TEXT,
    size_bytes INTEGER NOT NULL,
    snapshot TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX spot_templates_user ON spot_templates (user_id, created_at);
CREATE TABLE spot_deployments (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    template_id TEXT NOT NULL,
    instance_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    region TEXT NOT NULL,
    gpu_preference TEXT,
    workspace_path TEXT NOT NULL,
    image TEXT NOT NULL,
    disk_size REAL NOT NULL,
    onstart_cmd TEXT,
    max_price REAL NOT NULL,
    bid_price REAL NOT NULL,
    auto_failover INTEGER NOT NULL,
    sync_interval REAL NOT NULL,
    snapshot TEXT NOT NULL,
    snapshot_restored INTEGER NOT NULL DEFAULT 0,
    last_sync_at REAL,
    failover_count INTEGER NOT NULL DEFAULT 0,
    last_failover_at REAL,
    interrupted_at REAL,
    recovered_at REAL,
    last_recover_seconds REAL,
    reason TEXT,
    created_at REAL NOT NULL,
    deleted_at REAL
);
CREATE INDEX spot_deployments_user ON spot_deployments (user_id, deleted_at);
CREATE INDEX spot_deployments_state ON spot_deployments (state) WHERE deleted_at IS NULL;
CREATE TABLE spot_instances (
    instance_id INTEGER PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES spot_deployments(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL,
    started_at REAL NOT NULL
);
CREATE INDEX spot_instances_deployment ON spot_instances (deployment_id);
CREATE TABLE spot_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    deployment_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    instance_id INTEGER,
    new_instance_id INTEGER,
    machine_id TEXT,
    gpu_name TEXT,
    reason TEXT,
    work_lost_seconds REAL,
    time_to_recover_seconds REAL
);
CREATE INDEX spot_events_user ON spot_events (user_id, at);
CREATE TABLE market_price_overrides (
    offer_id INTEGER PRIMARY KEY,
    price REAL NOT NULL,
    set_at REAL NOT NULL,
    expires_at REAL
)
"""
