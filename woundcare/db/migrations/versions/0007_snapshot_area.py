"""the measured wound area as a plain column of its snapshot (issue 18: evidence of effect)

The pilot's effect figures follow each wound's area over time. The area sits inside the
sealed annotations; opening every snapshot's annotations to count would decrypt clinical
drawings for a number that names no one. Like an assessment's outcome, the area (cm2, two
decimals) is kept plain beside the sealed value, written by the same annotate call.

Snapshots measured before this revision have no plain area until they are annotated again
(``woundcare pilot areas`` fills them from the sealed measurement).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 14:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('snapshots') as batch:
        batch.add_column(sa.Column('area_cm2', sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('snapshots') as batch:
        batch.drop_column('area_cm2')
