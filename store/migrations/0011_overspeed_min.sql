-- Overspeed with a minimum duration: with `overspeed_min_s` > 0 a device's `overspeed`
-- event fires once per run over its speed limit, when the run has lasted that long
-- (0: at the first position over the limit).
ALTER TABLE devices ADD COLUMN overspeed_min_s integer NOT NULL DEFAULT 0;
