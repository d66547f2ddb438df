"""guest invitations: one-time links into a call for an interpreter, a relative or a GP (issue 19)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 16:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import woundcare.db.models

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('guest_invitations',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('consultation_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.Enum('INTERPRETER', 'RELATIVE', 'GP', name='guestkind', native_enum=False, length=20), nullable=False),
    sa.Column('subject', sa.String(length=80), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('cookie_hash', sa.String(length=64), nullable=True),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('created_at', woundcare.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', woundcare.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('redeemed_at', woundcare.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', woundcare.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code_hash'),
    sa.UniqueConstraint('cookie_hash'),
    sa.UniqueConstraint('subject')
    )
    with op.batch_alter_table('guest_invitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_guest_invitations_consultation_id'), ['consultation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_guest_invitations_revoked_at'), ['revoked_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('guest_invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_guest_invitations_revoked_at'))
        batch_op.drop_index(batch_op.f('ix_guest_invitations_consultation_id'))

    op.drop_table('guest_invitations')
