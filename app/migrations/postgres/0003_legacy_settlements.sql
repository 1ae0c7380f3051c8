-- Pylon business store, version 3. Records stored before the revenue side (version 2)
-- were never priced: each is marked settled without an account, at the pile's own amount
-- (no fee charged to anyone), so the reconciliation accounts for it. Records stored since
-- are settled in the transaction that stores them, so this finds none of them.
INSERT INTO settlements (trade_no, pile_no, station_id, account_id, tariff_id, tariff_revision,
    energy, electricity_fen, service_fen, platform_amount, pile_amount, start_time, at)
SELECT r.trade_no, r.pile_no, NULL, NULL, NULL, NULL, r.total_energy, 0, 0, r.total_amount,
    r.total_amount, r.start_time, r.received_at
FROM transaction_records r
WHERE NOT EXISTS (SELECT 1 FROM settlements s WHERE s.trade_no = r.trade_no);
