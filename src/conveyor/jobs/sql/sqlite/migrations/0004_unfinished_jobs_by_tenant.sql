-- Schema version 4: a tenant's unfinished jobs, for its limit of active jobs.

-- Each create counts the tenant's queued, running and cancelling jobs in its write
-- transaction (the limit holds however many creates race). This partial index holds only
-- those jobs, so the count reads them and never the tenant's finished history.
CREATE INDEX jobs_unfinished_by_tenant ON jobs (tenant)
WHERE status IN ('queued', 'running', 'cancelling');
