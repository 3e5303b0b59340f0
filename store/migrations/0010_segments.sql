-- Report segments: runs of one device's positions in one state (ignition, moving), on
-- one UTC day, without a data gap over 5 minutes; everything trips, stops and summaries
-- need of those positions (processor/src/reports.rs, `Segment`). The processor keeps
-- them in the transaction that stores the positions; a report reads a few rows a day
-- instead of every position.
CREATE TABLE segments (
    device_id        bigint NOT NULL,
    start_time       timestamptz NOT NULL,
    end_time         timestamptz NOT NULL,
    samples          integer NOT NULL,
    ignition         boolean,
    moving           boolean NOT NULL,
    first_lat        double precision,
    first_lon        double precision,
    last_lat         double precision,
    last_lon         double precision,
    distance_m       double precision NOT NULL,
    first_distance_m double precision NOT NULL,
    max_speed        double precision NOT NULL,
    max_gap_ms       bigint NOT NULL,
    first_odometer   double precision,
    last_odometer    double precision,
    odometer_rising  boolean NOT NULL,
    first_fuel       double precision,
    last_fuel        double precision,
    fuel_readings    integer NOT NULL,
    fuel_falls       double precision NOT NULL,
    -- Reports read one device over a time range; segments never overlap.
    PRIMARY KEY (device_id, start_time)
);

-- Devices whose segments are still to be cut from the positions stored before this
-- migration (the processor works through them); reports read their positions until then.
CREATE TABLE segments_pending (
    device_id bigint PRIMARY KEY
);
INSERT INTO segments_pending SELECT id FROM devices;
