-- The raw frame archive, indexed: every frame a device sent (and every command sent to
-- it) as it went over the wire, with what became of it. The gateway publishes the
-- records to the `{stream}_RAW` JetStream stream; the processor copies them here for
-- the traffic view (`GET /v1/devices/{id}/traffic`) and `fleetgate reprocess`.
-- Partitioned by day of the receive time; the processor drops days past
-- `processor.archive_retention_days`.
CREATE TABLE device_frames (
    device_id  bigint NOT NULL,
    time       timestamptz NOT NULL,
    -- The record's place in the archive stream (its batch's sequence * 65536 + its
    -- line): a redelivered record is one row.
    seq        bigint NOT NULL,
    tenant_id  bigint NOT NULL,
    connection text NOT NULL,
    transport  text NOT NULL,
    direction  text NOT NULL,
    bytes      bytea NOT NULL,
    size       integer NOT NULL,
    outcome    text NOT NULL,
    positions  integer,
    kind       text,
    error_offset bigint,
    error      text,
    reply      bytea,
    PRIMARY KEY (device_id, time, seq)
) PARTITION BY RANGE (time);
