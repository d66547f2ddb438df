"""users.hpr_number: the health professional's HPR number from single sign-on (issue 19)

HelseID sends the number each health professional has in the Health Personnel Register
(Helsepersonellregisteret). A login stores it on the user, and a deployment may link logins
to users by it. It is a public registry number, not patient data: kept plain, unique.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 16:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('hpr_number', sa.String(length=9), nullable=True))
        batch.create_unique_constraint('uq_users_hpr_number', ['hpr_number'])


def downgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.drop_constraint('uq_users_hpr_number', type_='unique')
        batch.drop_column('hpr_number')
