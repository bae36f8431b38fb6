"""wishes: the feature-request register (issue 16)

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'wishes',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('number', sa.Integer(), nullable=False, unique=True),
        sa.Column('key', sa.String(16), nullable=False, unique=True),
        sa.Column('title', sa.String(300), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('department', sa.String(64)),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('reason', sa.Text()),
        sa.Column('created_at', _AT, nullable=False),
        sa.Column('created_by', sa.String(320), nullable=False),
        sa.Column('updated_at', _AT, nullable=False),
        sa.Column('merged_into_id', sa.Integer(), sa.ForeignKey('wishes.id')),
    )
    op.create_index('ix_wishes_status', 'wishes', ['status'])
    op.create_table(
        'wish_requests',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('wish_id', sa.Integer(), sa.ForeignKey('wishes.id'), nullable=False),
        sa.Column('ticket_id', sa.Integer(), sa.ForeignKey('tickets.id'), nullable=False),
        sa.Column('ticket_ref', sa.String(32), nullable=False),
        sa.Column('customer', sa.String(320), nullable=False),
        sa.Column('at', _AT, nullable=False),
        sa.Column('by', sa.String(320), nullable=False),
        sa.Column('joined_by', sa.String(10), nullable=False),
        sa.Column('score', sa.Float()),
        sa.Column('title', sa.String(300), nullable=False),
        sa.Column('not_possible', sa.Boolean(), nullable=False),
    )
    op.create_index('ix_wish_requests_wish', 'wish_requests', ['wish_id', 'at'])
    op.create_index('ix_wish_requests_ticket', 'wish_requests', ['ticket_id'])
    op.create_table(
        'wish_history',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('wish_id', sa.Integer(), sa.ForeignKey('wishes.id'), nullable=False),
        sa.Column('at', _AT, nullable=False),
        sa.Column('by', sa.String(320), nullable=False),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('reason', sa.Text()),
        sa.Column('note', sa.Text()),
    )
    op.create_index('ix_wish_history_wish', 'wish_history', ['wish_id', 'id'])
    op.create_index('ix_wish_history_at', 'wish_history', ['at'])
    op.create_table(
        'wish_notices',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('wish_id', sa.Integer(), sa.ForeignKey('wishes.id'), nullable=False),
        sa.Column('customer', sa.String(320), nullable=False),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('at', _AT, nullable=False),
        sa.Column('result', sa.Text(), nullable=False),
        sa.UniqueConstraint('wish_id', 'customer', 'status', name='uq_wish_notices'),
    )
    op.create_table(
        'wish_mail',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('message_id', sa.String(998), unique=True),
        sa.Column('from_addr', sa.String(320), nullable=False),
        sa.Column('raw', sa.LargeBinary(), nullable=False),
        sa.Column('received_at', _AT, nullable=False),
        sa.Column('result', sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in ('wish_mail', 'wish_notices', 'wish_history', 'wish_requests', 'wishes'):
        op.drop_table(table)
