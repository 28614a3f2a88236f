"""A reply's lease: with several instances on one database, the instance streaming a reply renews it every few
seconds; a reply whose lease ran out lost its instance, and the others mark it interrupted.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message') as table:
        table.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    raise NotImplementedError('a chat room keeps its messages')
