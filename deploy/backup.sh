#!/usr/bin/env bash
# Back up woundcare: the PostgreSQL database, then the encrypted blob folder.
#   WOUNDCARE_DATABASE_URL=postgresql+asyncpg://... WOUNDCARE_DATA_DIR=/var/lib/woundcare deploy/backup.sh DEST
# The database goes first: every row in the dump had its blob written before it committed,
# so the blob copy made afterwards has it. Do not run `woundcare keys rotate` meanwhile.
# The master key is NOT in the backup on purpose: keep it apart (docs/operations.md).
set -euo pipefail
dest=${1:?usage: backup.sh DEST_DIR}
: "${WOUNDCARE_DATABASE_URL:?set WOUNDCARE_DATABASE_URL}" "${WOUNDCARE_DATA_DIR:?set WOUNDCARE_DATA_DIR}"
url=${WOUNDCARE_DATABASE_URL/postgresql+asyncpg:/postgresql:}
umask 077
mkdir -p "$dest"
pg_dump --format=custom --no-owner --file="$dest/database.dump" "$url"
tar -C "$WOUNDCARE_DATA_DIR" -cf "$dest/blobs.tar" blobs
sha256sum "$dest/database.dump" "$dest/blobs.tar" > "$dest/SHA256SUMS"
echo "backup written to $dest"
