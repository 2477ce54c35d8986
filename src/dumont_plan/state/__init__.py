"""What dumont remembers between runs: the ledger (`state.json`), its lock and saved plans."""
