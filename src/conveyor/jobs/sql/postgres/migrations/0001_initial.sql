-- PostgreSQL schema version 1: jobs, their items, the workers' leases, and the notifications
-- that wake idle workers and carry progress to every service instance. The same columns as
-- the SQLite store's version 2 (times are Unix seconds, JSON is stored as text).

CREATE TABLE conveyor_jobs (
    id text PRIMARY KEY,                       -- UUIDv7: sorts by creation time
    task text NOT NULL,
    options text NOT NULL,                     -- JobOptions as JSON
    status text NOT NULL,
    step text,
    inflight double precision NOT NULL DEFAULT 0,
    total integer NOT NULL DEFAULT 0,
    pending integer NOT NULL DEFAULT 0,
    running integer NOT NULL DEFAULT 0,
    succeeded integer NOT NULL DEFAULT 0,
    failed integer NOT NULL DEFAULT 0,
    cancelled integer NOT NULL DEFAULT 0,
    latency_total_s double precision NOT NULL DEFAULT 0,
    created_at double precision NOT NULL,
    started_at double precision,
    finished_at double precision,
    error text,
    tenant text NOT NULL DEFAULT 'default',
    idempotency_key text,
    version bigint NOT NULL DEFAULT 0,
    latency_hist text NOT NULL DEFAULT '{}',
    request_hash text                          -- what created the job, for idempotency keys
);

CREATE INDEX conveyor_jobs_by_status ON conveyor_jobs (status, id);
CREATE INDEX conveyor_jobs_by_tenant ON conveyor_jobs (tenant, id);
CREATE UNIQUE INDEX conveyor_jobs_by_idempotency_key ON conveyor_jobs (tenant, idempotency_key)
WHERE idempotency_key IS NOT NULL;

CREATE TABLE conveyor_items (
    job_id text NOT NULL,
    idx integer NOT NULL,
    input text NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    worker text,
    result text,
    error_type text,
    error_message text,
    latency_s double precision,
    started_at double precision,
    finished_at double precision,
    PRIMARY KEY (job_id, idx)
);

-- Claims take the lowest pending indexes of a job: a partial index holds only the pending
-- ones, so it shrinks as the job runs and a claim reads just the rows it takes.
CREATE INDEX conveyor_items_pending ON conveyor_items (job_id, idx) WHERE state = 'pending';
-- A worker's running items (release, re-queue of a dead worker's items).
CREATE INDEX conveyor_items_running ON conveyor_items (worker, job_id) WHERE state = 'running';
-- Pages of results by state.
CREATE INDEX conveyor_items_by_state ON conveyor_items (job_id, state, idx);

CREATE TABLE conveyor_workers (
    id text PRIMARY KEY,
    lease_until double precision NOT NULL
);

-- Every update of a job raises its version and notifies the channel '<schema>.conveyor_jobs'
-- with the job's id (delivered at commit, once per job per transaction): service instances
-- re-read the job for their SSE followers. When a job gains pending items while it is active
-- (a new job, retry-failed, items handed back), '<schema>.conveyor_work' wakes idle workers.
CREATE FUNCTION conveyor_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.version := OLD.version + 1;
    END IF;
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.conveyor_jobs', NEW.id);
    IF NEW.pending > 0 AND NEW.status IN ('queued', 'running')
       AND (TG_OP = 'INSERT' OR OLD.pending = 0 OR OLD.status NOT IN ('queued', 'running')) THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '.conveyor_work', NEW.id);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER conveyor_jobs_changed BEFORE INSERT OR UPDATE ON conveyor_jobs
FOR EACH ROW EXECUTE FUNCTION conveyor_job_changed();
