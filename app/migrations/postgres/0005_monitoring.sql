-- Version 5: what the console and the alarm engine read. Piles say whether they are
-- connected and which firmware they run (so lists filter in the store), guns keep a
-- downsampled trace of voltage, current and SOC, and alarms are stored with their states.

ALTER TABLE piles ADD COLUMN online BIGINT NOT NULL DEFAULT 0;
ALTER TABLE piles ADD COLUMN firmware TEXT NOT NULL DEFAULT '';
ALTER TABLE piles ADD COLUMN seen_at BIGINT;
CREATE INDEX piles_online ON piles (online, pile_no);
CREATE INDEX piles_firmware ON piles (firmware, pile_no);
CREATE INDEX gun_status_status ON gun_status (status, pile_no);
CREATE INDEX transaction_records_received ON transaction_records (received_at);
CREATE INDEX orders_created ON orders (created_at);
CREATE INDEX orders_state_updated ON orders (state, updated_at);

CREATE TABLE gun_samples (
    pile_no TEXT NOT NULL,
    gun_no  TEXT NOT NULL,
    at      BIGINT NOT NULL,
    voltage DOUBLE PRECISION NOT NULL,
    current DOUBLE PRECISION NOT NULL,
    soc     BIGINT NOT NULL,
    PRIMARY KEY (pile_no, at, gun_no)
);
CREATE INDEX gun_samples_at ON gun_samples (at);

-- One row per alarm occurrence. While it is not resolved, its dedup_key is unique: the
-- same condition raised again counts on the open row instead of adding one.
CREATE TABLE alarms (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedup_key   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    pile_no     TEXT,
    gun_no      TEXT,
    subject     TEXT NOT NULL,
    text        TEXT NOT NULL,
    state       TEXT NOT NULL,
    count       BIGINT NOT NULL,
    first_at    BIGINT NOT NULL,
    last_at     BIGINT NOT NULL,
    acked_by    TEXT,
    acked_at    BIGINT,
    resolved_by TEXT,
    resolved_at BIGINT
);
CREATE UNIQUE INDEX alarms_active_key ON alarms (dedup_key) WHERE state <> 'resolved';
CREATE INDEX alarms_state ON alarms (state, id);
CREATE INDEX alarms_pile ON alarms (pile_no, id);
