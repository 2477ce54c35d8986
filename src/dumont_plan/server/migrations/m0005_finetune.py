"""Fine-tunes (contract §6): uploaded datasets and fine-tune jobs, per user.

A fine-tune job's row is the truth for the API; the reconciler copies its runner's
`state.json` and the trainer's `progress.jsonl` into it (`progress_offset`: the bytes of the
progress file already read). An instance started by a fine-tune deploy may read a few host
paths (the Hugging Face model cache) that other instances do not: `instances.shared_paths`.
"""

SQL = """
CREATE TABLE finetune_datasets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    path TEXT NOT NULL UNIQUE,
    filename TEXT NOT NULL,
    format TEXT NOT NULL,
    records INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_ts REAL NOT NULL
);
CREATE INDEX finetune_datasets_by_user ON finetune_datasets (user_id, created_ts);
CREATE TABLE finetune_jobs (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    base_model TEXT NOT NULL,
    dataset_source TEXT NOT NULL,
    dataset_path TEXT NOT NULL,
    dataset_format TEXT NOT NULL,
    gpu_type TEXT NOT NULL,
    num_gpus INTEGER NOT NULL,
    config TEXT NOT NULL,
    preset TEXT,
    executor TEXT NOT NULL DEFAULT 'local',
    current_epoch INTEGER NOT NULL DEFAULT 0,
    current_step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER NOT NULL DEFAULT 0,
    loss REAL,
    progress_percent REAL NOT NULL DEFAULT 0,
    progress_offset INTEGER NOT NULL DEFAULT 0,
    output_model_path TEXT,
    error_message TEXT,
    exit_code INTEGER,
    created_ts REAL NOT NULL,
    started_ts REAL,
    completed_ts REAL,
    runner_pid INTEGER,
    runner_start TEXT,
    runner_token TEXT
);
CREATE INDEX finetune_jobs_by_user ON finetune_jobs (user_id, created_ts);
CREATE INDEX finetune_jobs_by_status ON finetune_jobs (status);
ALTER TABLE instances ADD COLUMN shared_paths TEXT
"""
