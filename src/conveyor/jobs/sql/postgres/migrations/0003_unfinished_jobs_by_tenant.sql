-- Schema version 3: a tenant's unfinished jobs, for its limit of active jobs.

-- Each create counts the tenant's queued, running and cancelling jobs in its transaction,
-- under a per-tenant lock (see `lock_tenant` in queries.sql). This partial index holds only
-- those jobs, so the count reads them and never the tenant's finished history.
CREATE INDEX conveyor_jobs_unfinished_by_tenant ON conveyor_jobs (tenant)
WHERE status IN ('queued', 'running', 'cancelling');
