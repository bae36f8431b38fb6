"""csat_optouts (customers who asked for no more satisfaction surveys), tickets by resolution time

Revision ID: 0010
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'csat_optouts',
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id']),
        sa.PrimaryKeyConstraint('address'),
    )
    # The survey job reads the tickets resolved a day ago (csat.delay) by this index.
    op.create_index('ix_tickets_resolved_at', 'tickets', ['resolved_at'])


def downgrade() -> None:
    op.drop_index('ix_tickets_resolved_at', table_name='tickets')
    op.drop_table('csat_optouts')
