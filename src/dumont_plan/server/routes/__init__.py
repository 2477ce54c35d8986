"""API routers; each mirrors a section of the contract under /api/v1."""
