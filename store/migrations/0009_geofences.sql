-- Geofences: circles and polygons per tenant (the shape as the API takes it:
-- {"circle": {"lat", "lon", "radius_m"}} or {"polygon": [[lat, lon], ...]}).
CREATE TABLE geofences (
    id         bigserial PRIMARY KEY,
    tenant_id  bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       text NOT NULL,
    shape      jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX geofences_tenant ON geofences (tenant_id);

-- An event may concern one of several things at the same moment (entering two
-- overlapping geofences): `ref` says which (the geofence id; 0 for the rest).
ALTER TABLE events ADD COLUMN ref bigint NOT NULL DEFAULT 0;
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD PRIMARY KEY (device_id, time, kind, ref);
