"""Scheduled jobs: a job's one-off `start_at` (it waits in status `scheduled` until then), the
schedule a job was created by, and the per-user cron schedules (a job template run at each due
time of a cron expression in a timezone)."""

SQL = """
ALTER TABLE jobs ADD COLUMN start_at REAL;
ALTER TABLE jobs ADD COLUMN schedule_id TEXT;
CREATE INDEX jobs_by_schedule ON jobs (schedule_id);
CREATE TABLE job_schedules (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    template TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    next_run_ts REAL,
    last_run_ts REAL,
    last_job_id TEXT,
    runs INTEGER NOT NULL DEFAULT 0,
    created_ts REAL NOT NULL
);
CREATE INDEX job_schedules_by_user ON job_schedules (user_id, created_ts)
"""
