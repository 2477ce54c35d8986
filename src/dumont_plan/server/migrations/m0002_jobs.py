"""Jobs: one row per job; the runner's live state is mirrored in by the reconciler."""

SQL = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    gpu_type TEXT NOT NULL,
    num_gpus INTEGER NOT NULL,
    use_spot INTEGER NOT NULL,
    price_per_hour REAL NOT NULL,
    timeout_minutes INTEGER NOT NULL,
    timeout_seconds REAL NOT NULL,
    max_retries INTEGER NOT NULL,
    has_hf_token INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    error_message TEXT,
    created_ts REAL NOT NULL,
    started_ts REAL,
    completed_ts REAL,
    runner_pid INTEGER,
    runner_start TEXT,
    runner_token TEXT
);
CREATE INDEX jobs_by_user ON jobs (user_id, created_ts);
CREATE INDEX jobs_by_status ON jobs (status)
"""
