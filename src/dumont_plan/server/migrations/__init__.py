"""Numbered schema migrations: `mNNNN_<name>.py` modules with a `SQL` string."""
