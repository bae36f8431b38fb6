"""participants and message_refs: conversations with several people (issue 22)

Who wrote into a ticket as a customer before this revision takes part in it as a
confirmed participant, as they did.

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'participants',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('confirmed', sa.Boolean(), nullable=False),
        sa.Column('added_by', sa.String(length=320), nullable=False),
        sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('ticket_id', 'address', name='uq_participants'),
    )
    op.create_table(
        'message_refs',
        sa.Column('message_id', sa.String(length=998), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id']),
        sa.PrimaryKeyConstraint('message_id'),
    )
    op.create_index('ix_message_refs_ticket_id', 'message_refs', ['ticket_id'])
    # Everyone who wrote into a ticket as a customer took part in it: they still do.
    op.execute(
        "INSERT INTO participants (ticket_id, address, confirmed, added_by, added_at) "
        "SELECT DISTINCT m.ticket_id, m.from_addr, TRUE, 'migration', t.created_at "
        "FROM messages m JOIN tickets t ON t.id = m.ticket_id "
        "WHERE m.direction = 'inbound' AND m.from_addr <> '' "
        "AND m.from_addr <> t.requester")


def downgrade() -> None:
    op.drop_index('ix_message_refs_ticket_id', table_name='message_refs')
    op.drop_table('message_refs')
    op.drop_table('participants')
