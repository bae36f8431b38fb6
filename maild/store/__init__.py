"""Storage: SQLAlchemy 2 typed models, repositories and Alembic migrations."""
