"""outbox: the per-recipient index also holds the kind

The loop limits count a recipient's automatic mail (kind acknowledgement or answer) in a
time window. With (rcpt_to, created_at) alone, every row counted was read from the table,
whose rows carry the whole composed message: the count slowed as the outbox grew. With the
kind in the index, the count reads the index only.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_rcpt')
        batch_op.create_index('ix_outbox_rcpt', ['rcpt_to', 'created_at', 'kind'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_rcpt')
        batch_op.create_index('ix_outbox_rcpt', ['rcpt_to', 'created_at'], unique=False)
