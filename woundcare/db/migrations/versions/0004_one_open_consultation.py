"""one open consultation per nurse and patient: a partial unique index (issue 14)

Two Starts at the same moment both passed a check made before the insert; the index lets the
database decide. Open duplicates left by earlier versions would stop the index from being
built: all but the newest of each are marked abandoned first, the status the queue gives
an open consultation nobody is in (nothing is deleted; session logs and snapshots stay).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "status IN ('WAITING', 'ACTIVE')"


def upgrade() -> None:
    op.execute(
        "UPDATE consultations SET status = 'ABANDONED', ended_at = CURRENT_TIMESTAMP "
        f"WHERE {OPEN} AND created_by IS NOT NULL AND EXISTS ("
        "SELECT 1 FROM consultations newer WHERE newer.patient_id = consultations.patient_id "
        "AND newer.created_by = consultations.created_by "
        "AND newer.status IN ('WAITING', 'ACTIVE') AND (newer.created_at > consultations.created_at "
        "OR (newer.created_at = consultations.created_at AND newer.id > consultations.id)))"
    )
    op.create_index(
        'uq_consultations_open_per_nurse', 'consultations', ['patient_id', 'created_by'], unique=True,
        sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index('uq_consultations_open_per_nurse', table_name='consultations')
