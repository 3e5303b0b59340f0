-- Tenants (companies) and their devices: what the gateway's registry reads and the API
-- manages. A device identifier (IMEI, terminal id) is unique across the platform.
CREATE TABLE tenants (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL,
    -- Devices that are not registered are refused unless this is on.
    auto_register boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE device_groups (
    id         bigserial PRIMARY KEY,
    tenant_id  bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

CREATE TABLE devices (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    identifier  text NOT NULL UNIQUE,
    protocol    text NOT NULL,
    name        text NOT NULL DEFAULT '',
    plate       text,
    group_id    bigint REFERENCES device_groups (id) ON DELETE SET NULL,
    -- km/h; overspeed events use it.
    speed_limit real,
    -- Wialon IPS login password, when the device must present one.
    password    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX devices_tenant ON devices (tenant_id);
