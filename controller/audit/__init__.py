"""The audit trail: every apply, drift, rollback and refusal, hash-chained, in SQLite or PostgreSQL.

    from controller.audit.store import AuditStore
    from controller.audit.models import NewEvent

models (pydantic, the boundary), orm (tables), chain (hashing), masking (display), store (database),
migrations/ (alembic, run on open). Importing this package stays cheap: nothing heavy is imported here.
"""

DEFAULT_URL = "sqlite:////var/lib/ha-gitops/audit.db"
URL_ENV = "HA_GITOPS_AUDIT_URL"
