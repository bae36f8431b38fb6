"""indexes for `maild report`: events by kind and time, messages by time

The report reads one period's events of a few kinds (tickets created, status changes,
replies sent, escalations, CSAT) and one period's inbound messages; without these indexes
each report would read every event and message ever stored. Both grow at their end (rows
are written in time order; events of some twenty kinds), so writing stays cheap.

Revision ID: 0012
Revises: 0011
"""
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_events_kind_at', 'events', ['kind', 'at'], unique=False)
    op.create_index('ix_messages_created_at', 'messages', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_messages_created_at', table_name='messages')
    op.drop_index('ix_events_kind_at', table_name='events')
