-- Reports that run in the background (long spans, large groups): the request, its state
-- and, once done, the finished body. The job's id travels on the `{stream}_JOBS`
-- work-queue stream to whichever API process takes it.
CREATE TABLE report_jobs (
    id          text PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    device_ids  bigint[] NOT NULL,
    from_time   timestamptz NOT NULL,
    to_time     timestamptz NOT NULL,
    csv         boolean NOT NULL,
    status      text NOT NULL DEFAULT 'queued',
    content_type text,
    result      text,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX report_jobs_tenant ON report_jobs (tenant_id, created_at);
