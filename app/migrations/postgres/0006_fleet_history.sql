-- Version 6: the fleet's size over time, one row per sampling period (hourly by
-- default), for capacity forecasts (pylonctl capacity forecast). Instances sharing the
-- store write each period once (the first wins).

CREATE TABLE fleet_history (
    at       BIGINT PRIMARY KEY,
    piles    BIGINT NOT NULL,
    online   BIGINT NOT NULL,
    charging BIGINT NOT NULL
);
