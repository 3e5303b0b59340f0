-- History written by the processor: positions, derived events, device messages, and
-- the devices whose live state in Redis must be rebuilt.

-- One row per record a device sent, keyed by device and fix time: a resent or
-- redelivered record is the same row and is stored once. Partitioned by month of the
-- fix time; the processor creates monthly partitions ahead and on demand (a black-box
-- upload from last year gets its month back) and detaches them past the retention.
CREATE TABLE positions (
    device_id  bigint NOT NULL,
    fix_time   timestamptz NOT NULL,
    tenant_id  bigint NOT NULL,
    received   timestamptz NOT NULL,
    lat        double precision,
    lon        double precision,
    altitude   double precision,
    speed      double precision,
    course     double precision,
    satellites integer,
    valid      boolean NOT NULL,
    attrs      jsonb NOT NULL,
    io         jsonb NOT NULL,
    -- The only index: tracks and reports read one device over a time range.
    PRIMARY KEY (device_id, fix_time)
) PARTITION BY RANGE (fix_time);

-- Fixes from broken clocks (before GNSS week rollovers were handled, or zeroed) are
-- kept, as the contract says, without a partition per year since 1970.
CREATE TABLE positions_before_2000 PARTITION OF positions FOR VALUES FROM (MINVALUE) TO ('2000-01-01');

-- What happened to a device, derived from its positions and its connection status.
-- The key makes derivation idempotent: re-deriving a span rewrites the same rows.
CREATE TABLE events (
    device_id bigint NOT NULL,
    time      timestamptz NOT NULL,
    kind      text NOT NULL,
    tenant_id bigint NOT NULL,
    lat       double precision,
    lon       double precision,
    details   jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (device_id, time, kind)
);
CREATE INDEX events_tenant_time ON events (tenant_id, time);

-- Non-position messages (command answers, text): what the command API shows.
CREATE TABLE device_messages (
    device_id  bigint NOT NULL,
    received   timestamptz NOT NULL,
    digest     text NOT NULL,
    tenant_id  bigint NOT NULL,
    kind       text NOT NULL,
    time       timestamptz,
    hex        text NOT NULL,
    text       text,
    command_id text,
    PRIMARY KEY (device_id, received, digest)
);

-- Devices whose live state could not be written to Redis when their data was
-- committed; the processor rebuilds them from history once Redis is back.
CREATE TABLE live_pending (
    device_id bigint PRIMARY KEY,
    tenant_id bigint NOT NULL,
    since     timestamptz NOT NULL DEFAULT now()
);

-- RFC 3339 in UTC, with milliseconds only when they are not zero (contract 1).
CREATE FUNCTION rfc3339(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN extract(microseconds FROM t)::bigint % 1000000 = 0 THEN ''
                ELSE to_char(t AT TIME ZONE 'UTC', '.MS') END
        || 'Z'
$$;

-- A stored position as contract 1 (with `received`), built where the row is, so the
-- API can stream history without decoding rows.
CREATE FUNCTION position_json(p positions, device text, protocol text) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_strip_nulls(json_build_object(
        'device', device, 'protocol', protocol,
        'time', rfc3339(p.fix_time), 'received', rfc3339(p.received),
        'lat', p.lat, 'lon', p.lon, 'altitude', p.altitude, 'speed', p.speed, 'course', p.course,
        'satellites', p.satellites, 'valid', p.valid, 'attrs', p.attrs, 'io', p.io))
$$;
