"""Instances (local sandboxes over the simulated market), machine attempts and blacklists.

Instance ids are integers starting at 30000000 (they look like the provider's contract ids) and
are never reused: a deleted instance keeps its row with `deleted_at` set. At most one live
instance rents an offer (partial unique index). Attempts and blacklist entries are per user.
"""

SQL = """
CREATE TABLE instances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id),
    offer_id INTEGER NOT NULL,
    machine_id TEXT NOT NULL,
    gpu_name TEXT NOT NULL,
    num_gpus INTEGER NOT NULL,
    use_spot INTEGER NOT NULL DEFAULT 0,
    image TEXT NOT NULL,
    disk_size REAL NOT NULL,
    label TEXT,
    ports TEXT NOT NULL DEFAULT '[]',
    onstart_cmd TEXT,
    status TEXT NOT NULL,
    actual_status TEXT NOT NULL,
    status_msg TEXT,
    boot_attempt INTEGER NOT NULL DEFAULT 0,
    boot_fails INTEGER NOT NULL DEFAULT 0,
    booted INTEGER NOT NULL DEFAULT 0,
    frozen INTEGER NOT NULL DEFAULT 0,
    ready_at REAL,
    created_at REAL NOT NULL,
    pid INTEGER,
    pid_start TEXT,
    cost REAL NOT NULL DEFAULT 0,
    cost_since REAL NOT NULL,
    deleted_at REAL
);
INSERT INTO sqlite_sequence (name, seq) VALUES ('instances', 29999999);
CREATE INDEX instances_user ON instances (user_id, deleted_at);
CREATE UNIQUE INDEX instances_live_offer ON instances (offer_id) WHERE deleted_at IS NULL;
CREATE INDEX instances_loading ON instances (actual_status, ready_at) WHERE deleted_at IS NULL;
CREATE TABLE machine_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id),
    provider TEXT NOT NULL,
    machine_id TEXT NOT NULL,
    offer_id TEXT,
    gpu_name TEXT,
    price_per_hour REAL,
    attempted_at REAL NOT NULL,
    success INTEGER NOT NULL,
    instance_id TEXT,
    failure_stage TEXT,
    failure_reason TEXT,
    time_to_ready_seconds REAL
);
CREATE INDEX machine_attempts_machine ON machine_attempts (user_id, provider, machine_id, id);
CREATE INDEX machine_attempts_time ON machine_attempts (user_id, attempted_at);
CREATE TABLE machine_blacklist (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id),
    provider TEXT NOT NULL,
    machine_id TEXT NOT NULL,
    blacklist_type TEXT NOT NULL,
    total_attempts INTEGER NOT NULL DEFAULT 0,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    failure_rate REAL NOT NULL DEFAULT 0,
    last_failure_reason TEXT,
    blacklisted_at REAL NOT NULL,
    expires_at REAL,
    reason TEXT,
    gpu_name TEXT,
    UNIQUE (user_id, provider, machine_id)
)
"""
