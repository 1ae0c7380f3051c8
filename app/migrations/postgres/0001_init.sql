-- Pylon business store, PostgreSQL, version 1. Times are Unix milliseconds (UTC), amounts
-- and energies raw protocol integers, JSON as JSONB. No foreign keys: a record or an event
-- from a pile whose row is missing must still be stored.

CREATE TABLE piles (
    pile_no       TEXT PRIMARY KEY,
    enabled       BOOLEAN NOT NULL,
    billing_model INTEGER NOT NULL,
    name          TEXT NOT NULL,
    last_login_at BIGINT
);

CREATE TABLE billing_models (
    model_no   INTEGER PRIMARY KEY,
    fields     JSONB NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Current state, one row per gun; the primary key answers "status of pile X".
CREATE TABLE gun_status (
    pile_no    TEXT NOT NULL,
    gun_no     TEXT NOT NULL,
    status     SMALLINT NOT NULL,
    data       JSONB NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (pile_no, gun_no)
);

CREATE TABLE status_history (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pile_no TEXT NOT NULL,
    gun_no  TEXT NOT NULL,
    status  SMALLINT NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX status_history_gun_at ON status_history (pile_no, gun_no, at);

CREATE TABLE session_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pile_no    TEXT NOT NULL,
    gun_no     TEXT NOT NULL,
    trade_no   TEXT NOT NULL,
    frame_type SMALLINT NOT NULL,
    fields     JSONB NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX session_events_trade ON session_events (trade_no, at);

CREATE TABLE orders (
    trade_no   TEXT PRIMARY KEY,
    pile_no    TEXT NOT NULL,
    gun_no     TEXT NOT NULL,
    state      TEXT NOT NULL,
    origin     TEXT NOT NULL,
    balance    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    failure    TEXT
);
CREATE INDEX orders_pile_created ON orders (pile_no, created_at);
-- Only open orders are indexed: the finished/failed bulk never is scanned for them.
CREATE INDEX orders_open ON orders (created_at)
    WHERE state IN ('starting', 'charging', 'stopping');

CREATE TABLE transaction_records (
    trade_no     TEXT PRIMARY KEY,
    pile_no      TEXT NOT NULL,
    gun_no       TEXT NOT NULL,
    start_time   BIGINT NOT NULL,
    end_time     BIGINT NOT NULL,
    total_energy BIGINT NOT NULL,
    total_amount BIGINT NOT NULL,
    stop_reason  SMALLINT NOT NULL,
    fields       JSONB NOT NULL,
    received_at  BIGINT NOT NULL
);
CREATE INDEX transaction_records_pile_end ON transaction_records (pile_no, end_time);
