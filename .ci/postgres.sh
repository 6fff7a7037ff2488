#!/usr/bin/env bash
# Start a local PostgreSQL server for the store's tests (idempotent; Debian's postgresql package).
# Installs Debian's postgresql if missing, starts the cluster, creates role `harness` (password `harness`)
# and database `harness_test`. Afterwards export
#   HARNESS_TEST_PG_URL=postgresql+psycopg://harness:harness@127.0.0.1:5432/harness_test
set -euo pipefail

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
    pg_createcluster "$version" main >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
    pg_ctlcluster "$version" main start
fi

for _ in $(seq 1 50); do
    runuser -u postgres -- pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.2
done

runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L','harness','harness') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='harness')\gexec
SELECT format('CREATE DATABASE %I OWNER %I','harness_test','harness') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname='harness_test')\gexec
-- CREATEROLE: the secrets tests make a role with a password of their own
ALTER ROLE harness CREATEDB CREATEROLE;
SQL
echo "postgresql $version ready: postgresql+psycopg://harness:***@127.0.0.1:5432/harness_test"
