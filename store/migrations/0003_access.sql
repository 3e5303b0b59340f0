-- Who may use the API: users with passwords, API keys, sessions; and what the API
-- manages besides devices: drivers and commands.

CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    tenant_id     bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Lower-cased; one account per address across the platform, so login needs no tenant.
    email         text NOT NULL UNIQUE,
    name          text NOT NULL DEFAULT '',
    -- argon2id, PHC string format.
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'dispatcher', 'viewer')),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_tenant ON users (tenant_id);

-- A key is shown once; only its SHA-256 is kept (keys are 256 random bits, so a fast
-- hash is enough and lets every request be checked cheaply).
CREATE TABLE api_keys (
    id         bigserial PRIMARY KEY,
    tenant_id  bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       text NOT NULL DEFAULT '',
    role       text NOT NULL CHECK (role IN ('admin', 'dispatcher', 'viewer')),
    key_hash   bytea NOT NULL UNIQUE,
    -- The last characters, so people can tell their keys apart.
    key_hint   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Session tokens from POST /v1/auth/login, stored hashed like keys, with an expiry.
CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id  bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE drivers (
    id         bigserial PRIMARY KEY,
    tenant_id  bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       text NOT NULL,
    -- iButton or RFID card id as the device reports it (`driver_id` attribute).
    key_id     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, key_id)
);

-- Commands queued through the API; the answer is the device message with this id.
CREATE TABLE commands (
    id         text PRIMARY KEY,
    tenant_id  bigint NOT NULL,
    device_id  bigint NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    text       text,
    hex        text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX commands_device ON commands (device_id, created_at);
