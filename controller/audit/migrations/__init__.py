"""Alembic migrations of the audit database, shipped in the package and run on open (upgrade head)."""
