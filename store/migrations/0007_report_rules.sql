-- Report rules (trip and stop detection, fuel thresholds) per tenant and per device, as
-- JSON objects of the fields to change from the defaults (docs/REPORTS.md); a device's
-- own fields win over its tenant's. NULL: the defaults.
ALTER TABLE tenants ADD COLUMN report_rules jsonb;
ALTER TABLE devices ADD COLUMN report_rules jsonb;
