"""job_runs: each scheduled job's run for one due time, claimed once across daemons

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'job_runs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('job', sa.String(length=64), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('run_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('job', 'key', name='uq_job_runs_job_key'),
    )
    op.create_index('ix_job_runs_job_at', 'job_runs', ['job', 'run_at'])


def downgrade() -> None:
    op.drop_index('ix_job_runs_job_at', table_name='job_runs')
    op.drop_table('job_runs')
