-- What the gateway must know to read a device's frames where its protocol does not say:
-- the model (GT06 firmware families differ by model) and the offset of the device's
-- clock from UTC, in minutes east, for devices set to local time. NULL: as the protocol
-- says (UTC, or what the device announces at login).
ALTER TABLE devices
    ADD COLUMN model text,
    ADD COLUMN utc_offset_minutes integer CHECK (utc_offset_minutes BETWEEN -720 AND 840);
