"""A per-user token generation: tokens carry it, `POST /auth/logout-all` bumps it."""

SQL = """
ALTER TABLE users ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0
"""
