"""Pure planning: desired + observed + ledger -> Plan. No I/O here."""
