-- Schema version 2: what the job service needs. Version-1 files are upgraded in place.

-- Whose job it is: the service scopes every call to the caller's tenant. Jobs made before
-- this version belong to the tenant 'default' (the one of a service without API keys).
ALTER TABLE jobs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';

-- The Idempotency-Key a job was submitted with: one job per (tenant, key).
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;

-- Grows with every change to the row (the trigger below): the cursor of a job's change feed,
-- and the id of its Server-Sent Events, so a client can resume where it stopped.
ALTER TABLE jobs ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

-- The settled items' latencies, bucketed on a log scale (conveyor.jobs.latency): the
-- percentiles of a job of any size are one row read away.
ALTER TABLE jobs ADD COLUMN latency_hist TEXT NOT NULL DEFAULT '{}';

CREATE UNIQUE INDEX jobs_by_idempotency_key ON jobs (tenant, idempotency_key)
WHERE idempotency_key IS NOT NULL;

-- A tenant's jobs, newest first, page after page.
CREATE INDEX jobs_by_tenant ON jobs (tenant, id);

-- Every update of a job bumps its version, whichever statement made it. The WHEN clause
-- stops the trigger's own update from firing it again, even with recursive triggers on.
CREATE TRIGGER jobs_version AFTER UPDATE ON jobs
FOR EACH ROW WHEN NEW.version = OLD.version
BEGIN
    UPDATE jobs SET version = OLD.version + 1 WHERE id = NEW.id;
END;
