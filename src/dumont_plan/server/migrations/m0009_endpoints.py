"""Serverless endpoints (contract §7.3): request-driven, scale-to-zero HTTP workloads.

An endpoint belongs to one user; its workers are sandboxed processes serving HTTP on a loopback
port (`provider/endpoint_pool.py`); each proxied request leaves one row in
`endpoint_requests` (the metrics of the last 24 h are computed from them, older rows are
pruned by the reconciler).
"""

SQL = """
CREATE TABLE endpoints (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    machine_type TEXT NOT NULL,
    gpu_name TEXT NOT NULL,
    region TEXT NOT NULL,
    docker_image TEXT NOT NULL,
    command TEXT,
    model_id TEXT NOT NULL DEFAULT '',
    env_vars TEXT NOT NULL DEFAULT '{}',
    min_instances INTEGER NOT NULL,
    max_instances INTEGER NOT NULL,
    concurrency INTEGER NOT NULL,
    idle_timeout_seconds INTEGER NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    deleted_at REAL
);
CREATE INDEX endpoints_user ON endpoints (user_id, created_at);
CREATE TABLE endpoint_workers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id),
    port INTEGER NOT NULL,
    pid INTEGER,
    pid_start TEXT,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    ready_at REAL,
    stopped_at REAL,
    last_used_at REAL NOT NULL,
    cold_start_seconds REAL,
    error TEXT
);
CREATE INDEX endpoint_workers_live ON endpoint_workers (endpoint_id, status);
CREATE TABLE endpoint_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id),
    at REAL NOT NULL,
    latency_ms REAL NOT NULL,
    status INTEGER NOT NULL,
    cold_start INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX endpoint_requests_at ON endpoint_requests (endpoint_id, at)
"""
