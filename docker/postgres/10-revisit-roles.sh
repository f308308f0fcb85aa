#!/bin/sh
# Run once by the postgis image when its data directory is created (after 10_postgis.sh):
# the services' role (rows only) and the read-only role of Grafana and analysts. The
# schema owner is POSTGRES_USER (revisit); `revisit db upgrade` then grants both roles.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v writer_password="$REVISIT_WRITER_PASSWORD" -v reader_password="$REVISIT_READER_PASSWORD" <<'SQL'
CREATE ROLE revisit_writer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'writer_password';
CREATE ROLE revisit_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'reader_password';
SQL
