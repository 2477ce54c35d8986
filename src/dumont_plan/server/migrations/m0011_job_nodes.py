"""Multi-node jobs: how many machines (`num_nodes`, 1-16) a job runs on. The local executor
runs that many ranks (`provider/ranks.py`), SkyPilot that many nodes; the price counts them all."""

SQL = """
ALTER TABLE jobs ADD COLUMN num_nodes INTEGER NOT NULL DEFAULT 1
"""
