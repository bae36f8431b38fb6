"""command_mail: agents' queue commands by mail, raw bytes kept (issue 18)

Revision ID: 0016
Revises: 0015
"""
from alembic import op
import sqlalchemy as sa

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'command_mail',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('message_id', sa.String(998), unique=True),
        sa.Column('from_addr', sa.String(320), nullable=False),
        sa.Column('raw', sa.LargeBinary(), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('result', sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('command_mail')
