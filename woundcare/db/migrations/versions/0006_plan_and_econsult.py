"""the plan back and e-consults: a consultation's kind, an e-consult's urgency and sealed
question, an assessment's acknowledgement by the nurse (issue 18)

Existing consultations are video calls. The one-open-per-nurse-and-patient index now covers
video calls only: an e-consult waiting for its answer must not stop the nurse from calling
about the same patient, nor two questions about one wound.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 14:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import woundcare.db.models

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "status IN ('WAITING', 'ACTIVE')"
OPEN_CALL = f"{OPEN} AND kind = 'VIDEO'"


def upgrade() -> None:
    with op.batch_alter_table('consultations') as batch:
        batch.add_column(sa.Column(
            'kind', sa.Enum('VIDEO', 'ECONSULT', name='consultationkind', native_enum=False, length=20),
            server_default='VIDEO', nullable=False,
        ))
        batch.add_column(sa.Column(
            'urgency', sa.Enum('ROUTINE', 'SOON', 'URGENT', name='urgency', native_enum=False, length=20),
            nullable=True,
        ))
        batch.add_column(sa.Column('question_sealed', sa.LargeBinary(), nullable=True))
    op.drop_index('uq_consultations_open_per_nurse', table_name='consultations')
    op.create_index(
        'uq_consultations_open_per_nurse', 'consultations', ['patient_id', 'created_by'], unique=True,
        sqlite_where=sa.text(OPEN_CALL), postgresql_where=sa.text(OPEN_CALL),
    )
    with op.batch_alter_table('assessments') as batch:
        batch.add_column(sa.Column(
            'acknowledged_at', woundcare.db.models.UTCDateTime(timezone=True), nullable=True
        ))
        batch.add_column(sa.Column('acknowledged_by', sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('assessments') as batch:
        batch.drop_column('acknowledged_by')
        batch.drop_column('acknowledged_at')
    op.drop_index('uq_consultations_open_per_nurse', table_name='consultations')
    # The older schema knows no e-consults: an open one would be an open call beside the
    # nurse's real one and stop the index from being built, so it is closed as abandoned.
    op.execute(f"UPDATE consultations SET status = 'ABANDONED', ended_at = CURRENT_TIMESTAMP "
               f"WHERE {OPEN} AND kind = 'ECONSULT'")
    op.create_index(
        'uq_consultations_open_per_nurse', 'consultations', ['patient_id', 'created_by'], unique=True,
        sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN),
    )
    with op.batch_alter_table('consultations') as batch:
        batch.drop_column('question_sealed')
        batch.drop_column('urgency')
        batch.drop_column('kind')
