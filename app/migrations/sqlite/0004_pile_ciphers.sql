-- Per-pile body encryption (YKC flag 0x01, 3DES): the key and its mode and padding,
-- sealed by the card-key vault (AES-256-GCM) like card numbers.
CREATE TABLE pile_ciphers (
    pile_no    TEXT PRIMARY KEY REFERENCES piles (pile_no),
    sealed     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The retention job deletes raw events and status history by age.
CREATE INDEX session_events_at ON session_events (at);
CREATE INDEX status_history_at ON status_history (at);
