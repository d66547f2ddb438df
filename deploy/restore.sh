#!/usr/bin/env bash
# Restore a backup made by backup.sh into an empty database and data folder.
#   WOUNDCARE_DATABASE_URL=... WOUNDCARE_DATA_DIR=... deploy/restore.sh SRC
# Then start woundcare with the same master key (WOUNDCARE_MASTER_KEY or master.key) as before.
set -euo pipefail
src=${1:?usage: restore.sh SRC_DIR}
: "${WOUNDCARE_DATABASE_URL:?set WOUNDCARE_DATABASE_URL}" "${WOUNDCARE_DATA_DIR:?set WOUNDCARE_DATA_DIR}"
url=${WOUNDCARE_DATABASE_URL/postgresql+asyncpg:/postgresql:}
(cd "$src" && sha256sum --check --quiet SHA256SUMS)
pg_restore --no-owner --exit-on-error --dbname="$url" "$src/database.dump"
mkdir -p "$WOUNDCARE_DATA_DIR"
tar -C "$WOUNDCARE_DATA_DIR" -xf "$src/blobs.tar"
echo "restored from $src"
