"""blind index of national ids: a per-region index key and an indexed column on patients (issue 18)

Registering a known national id made a second patient, as identities are sealed and nothing
could be looked up. ``patients.national_id_index`` holds an HMAC of the number under the
region's index key (``region_index_keys``, wrapped by the master key); the unique index lets
the database decide between concurrent registrations of one number. Existing rows stay NULL
until ``woundcare patients index`` fills them in.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import woundcare.db.models

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('region_index_keys',
    sa.Column('region_id', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('wrapped', sa.LargeBinary(), nullable=True),
    sa.Column('master_key_id', sa.String(length=40), nullable=False),
    sa.Column('created_at', woundcare.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['region_id'], ['regions.id'], ),
    sa.PrimaryKeyConstraint('region_id'),
    sa.UniqueConstraint('id')
    )
    op.add_column('patients', sa.Column('national_id_index', sa.LargeBinary(), nullable=True))
    op.create_index(
        'uq_patients_region_national_id_index', 'patients', ['region_id', 'national_id_index'], unique=True
    )


def downgrade() -> None:
    op.drop_index('uq_patients_region_national_id_index', table_name='patients')
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_column('national_id_index')
    op.drop_table('region_index_keys')
