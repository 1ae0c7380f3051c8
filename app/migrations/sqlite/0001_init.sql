-- Pylon business store, SQLite, version 1. Times are Unix milliseconds (UTC), amounts and
-- energies raw protocol integers, JSON as TEXT. No foreign keys: a record or an event from a
-- pile whose row is missing must still be stored.

CREATE TABLE piles (
    pile_no       TEXT PRIMARY KEY,
    enabled       INTEGER NOT NULL,
    billing_model INTEGER NOT NULL,
    name          TEXT NOT NULL,
    last_login_at INTEGER
);

CREATE TABLE billing_models (
    model_no   INTEGER PRIMARY KEY,
    fields     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Current state, one row per gun; the primary key answers "status of pile X".
CREATE TABLE gun_status (
    pile_no    TEXT NOT NULL,
    gun_no     TEXT NOT NULL,
    status     INTEGER NOT NULL,
    data       TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (pile_no, gun_no)
);

CREATE TABLE status_history (
    id      INTEGER PRIMARY KEY,
    pile_no TEXT NOT NULL,
    gun_no  TEXT NOT NULL,
    status  INTEGER NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX status_history_gun_at ON status_history (pile_no, gun_no, at);

CREATE TABLE session_events (
    id         INTEGER PRIMARY KEY,
    pile_no    TEXT NOT NULL,
    gun_no     TEXT NOT NULL,
    trade_no   TEXT NOT NULL,
    frame_type INTEGER NOT NULL,
    fields     TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX session_events_trade ON session_events (trade_no, at);

CREATE TABLE orders (
    trade_no   TEXT PRIMARY KEY,
    pile_no    TEXT NOT NULL,
    gun_no     TEXT NOT NULL,
    state      TEXT NOT NULL,
    origin     TEXT NOT NULL,
    balance    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
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
    start_time   INTEGER NOT NULL,
    end_time     INTEGER NOT NULL,
    total_energy INTEGER NOT NULL,
    total_amount INTEGER NOT NULL,
    stop_reason  INTEGER NOT NULL,
    fields       TEXT NOT NULL,
    received_at  INTEGER NOT NULL
);
CREATE INDEX transaction_records_pile_end ON transaction_records (pile_no, end_time);
