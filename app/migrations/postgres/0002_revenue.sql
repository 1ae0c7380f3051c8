-- Pylon business store, PostgreSQL, version 2: the revenue side. Money in fen (0.01 yuan),
-- record amounts in 0.0001 yuan, energy in 0.0001 kWh, times Unix milliseconds (UTC).
-- Card numbers, VINs and passwords never appear in clear: `*_sealed` is AES-256-GCM
-- under a key named in the value, `*_index` a keyed hash for lookups, `*_masked` what
-- operators see.

CREATE TABLE stations (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name               TEXT NOT NULL,
    address            TEXT NOT NULL,
    latitude           DOUBLE PRECISION,
    longitude          DOUBLE PRECISION,
    utc_offset_minutes BIGINT NOT NULL,
    power_cap_kw       BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

ALTER TABLE piles ADD COLUMN station_id BIGINT;
CREATE INDEX piles_station ON piles (station_id);

CREATE TABLE tariffs (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- Revisions are never changed: a record is priced with the one in force when it started.
CREATE TABLE tariff_revisions (
    tariff_id  BIGINT NOT NULL,
    revision   BIGINT NOT NULL,
    rates      TEXT NOT NULL,
    loss_ratio BIGINT NOT NULL,
    slots      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tariff_id, revision)
);

CREATE TABLE station_tariffs (
    station_id BIGINT NOT NULL,
    valid_from BIGINT NOT NULL,
    tariff_id  BIGINT NOT NULL,
    PRIMARY KEY (station_id, valid_from)
);

CREATE TABLE accounts (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT NOT NULL,
    state      TEXT NOT NULL,
    balance    BIGINT NOT NULL,
    held       BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE account_stations (
    account_id BIGINT NOT NULL,
    station_id BIGINT NOT NULL,
    PRIMARY KEY (account_id, station_id)
);

CREATE TABLE cards (
    card_index     TEXT PRIMARY KEY,
    account_id     BIGINT NOT NULL,
    card_sealed    TEXT NOT NULL,
    card_masked    TEXT NOT NULL,
    logical_sealed TEXT NOT NULL,
    logical_masked TEXT NOT NULL,
    password_index TEXT,
    created_at     BIGINT NOT NULL
);
CREATE INDEX cards_account ON cards (account_id);

CREATE TABLE vins (
    vin_index  TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL,
    vin_sealed TEXT NOT NULL,
    vin_masked TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX vins_account ON vins (account_id);

-- Double entry: each row moves `amount` from one book to another; rows are never
-- changed or removed.
CREATE TABLE ledger (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    debit      TEXT NOT NULL,
    credit     TEXT NOT NULL,
    amount     BIGINT NOT NULL CHECK (amount > 0),
    account_id BIGINT,
    trade_no   TEXT,
    actor      TEXT NOT NULL,
    reason     TEXT NOT NULL
);
CREATE INDEX ledger_account ON ledger (account_id, id);
CREATE INDEX ledger_trade ON ledger (trade_no);

CREATE TABLE holds (
    trade_no   TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL,
    amount     BIGINT NOT NULL,
    state      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    closed_at  BIGINT
);
CREATE INDEX holds_open ON holds (account_id) WHERE state = 'open';

-- Who an order is for, and the card or VIN (its index) it was started with.
ALTER TABLE orders ADD COLUMN account_id BIGINT;
ALTER TABLE orders ADD COLUMN credential TEXT;
CREATE INDEX orders_credential ON orders (credential)
    WHERE state IN ('starting', 'charging', 'stopping');

CREATE TABLE settlements (
    trade_no        TEXT PRIMARY KEY,
    pile_no         TEXT NOT NULL,
    station_id      BIGINT,
    account_id      BIGINT,
    tariff_id       BIGINT,
    tariff_revision BIGINT,
    energy          BIGINT NOT NULL,
    electricity_fen BIGINT NOT NULL,
    service_fen     BIGINT NOT NULL,
    platform_amount BIGINT NOT NULL,
    pile_amount     BIGINT NOT NULL,
    start_time      BIGINT NOT NULL,
    at              BIGINT NOT NULL
);
CREATE INDEX settlements_start ON settlements (start_time);

CREATE TABLE discrepancies (
    trade_no        TEXT PRIMARY KEY,
    pile_no         TEXT NOT NULL,
    platform_amount BIGINT NOT NULL,
    pile_amount     BIGINT NOT NULL,
    at              BIGINT NOT NULL
);

CREATE TABLE quarantined_records (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trade_no    TEXT NOT NULL,
    pile_no     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    fields      TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
