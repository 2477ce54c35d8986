"""Remote state (Terraform's HTTP backend protocol): one document and one lock per user and
project. `document` is NULL while only a lock is stored; `serial`/`lineage` are read from it."""

SQL = """
CREATE TABLE states (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project TEXT NOT NULL,
    document TEXT,
    serial INTEGER,
    lineage TEXT,
    lock_id TEXT,
    lock_info TEXT,
    updated_ts REAL NOT NULL,
    PRIMARY KEY (user_id, project)
)
"""
