"""Storage: SQLAlchemy 2.0 models, the database and its sessions, Alembic
migrations, and the mapping of rows to the views plugins and the API get.

May import: ``hub.sdk`` (schema dataclasses, contracts).  Nothing else of the hub.
"""
