"""Sharing the room: a reply's token counts may be an estimate (a server that sends no usage), and the daily budget
and the room's question rate count replies by the time they were made.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message') as table:
        table.add_column(sa.Column('usage_estimated', sa.Boolean(), nullable=False, server_default=sa.false()))
        table.create_index('ix_message_created_at', ['created_at'])


def downgrade() -> None:
    raise NotImplementedError('a chat room keeps its messages')
