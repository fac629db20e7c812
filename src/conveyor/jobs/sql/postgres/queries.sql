-- The PostgreSQL store's own statements, by name: those of ../common/queries.sql that each
-- dialect writes, the bulk write of PgConnection (record_items) and any_active; the loader
-- (conveyor.jobs.stores.sql_files) adds the common ones. conveyor.jobs.stores.postgres_schema
-- turns the :named parameters of all of them into asyncpg's $1, $2, ... . :now is the store
-- clock's Unix time, or NULL for the database's own clock (the default: one clock for every
-- machine); postgres_schema turns it into COALESCE(:now, the transaction's time on the
-- database).
--
-- Lock order, to keep transactions from deadlocking: items first, the job's row last (its
-- counts), held only until the commit that follows.

-- name: insert_job
-- The job's id, or NULL when a create with the same idempotency key got there first: the
-- insert waits for that create's commit (the unique index), then inserts nothing, and the
-- caller reads the winner (`job_by_key`) instead of failing on the unique violation.
INSERT INTO conveyor_jobs (id, task, options, status, created_at, tenant, idempotency_key,
                           request_hash)
VALUES (:id, :task, :options, 'queued', :now, :tenant, :key, :hash)
ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id;

-- name: lock_tenant
-- Creates of one tenant with a limit, and retries that reopen one of its completed jobs, take
-- turns here, as the last step of their transactions, to count its active jobs: each count
-- then sees every one that passed before it (they committed before letting go of the lock).
-- Its holder only counts and commits, waiting for nothing else: no cycle of waits can form
-- with the row locks.
SELECT pg_advisory_xact_lock(hashtextextended('conveyor tenant ' || :tenant, 0));

-- name: next_job
-- :tasks: the task names the worker has (NULL: any task); :skip: jobs to pass over. A job with
-- a spend budget runs on one worker at a time: while another worker has items of it running,
-- it is not claimed (so the budget is counted in one place and kept exactly). The second
-- column says whether the job has a budget: the claim then takes `lock_budgeted` and looks
-- again (`held_by_another`), since two claims can both find it free.
SELECT id, (options::jsonb ->> 'max_cost_usd') IS NOT NULL FROM conveyor_jobs AS j
WHERE status IN ('queued', 'running') AND pending > 0
  AND (:tasks::text[] IS NULL OR task = ANY(:tasks))
  AND (:skip::text[] IS NULL OR NOT id = ANY(:skip))
  AND NOT ((options::jsonb ->> 'max_cost_usd') IS NOT NULL AND running > 0 AND EXISTS (
      SELECT 1 FROM conveyor_items AS i
      WHERE i.job_id = j.id AND i.state = 'running' AND i.worker <> :worker))
ORDER BY id LIMIT 1;

-- name: this_job
SELECT id, (options::jsonb ->> 'max_cost_usd') IS NOT NULL FROM conveyor_jobs AS j
WHERE id = :id AND status IN ('queued', 'running') AND pending > 0
  AND (:tasks::text[] IS NULL OR task = ANY(:tasks))
  AND NOT ((options::jsonb ->> 'max_cost_usd') IS NOT NULL AND running > 0 AND EXISTS (
      SELECT 1 FROM conveyor_items AS i
      WHERE i.job_id = j.id AND i.state = 'running' AND i.worker <> :worker));

-- name: lock_budgeted
-- Claims of one budgeted job take turns (until their commits). Taken before any row lock, and
-- nothing waits for it while holding one: it cannot deadlock with the item and job locks. A
-- claim waits on one such lock at most (the first); past that it only tries (`try_lock_budgeted`),
-- so two claims cannot each hold one and wait for the other's.
SELECT pg_advisory_xact_lock(hashtextextended('conveyor budgeted job ' || :job, 0));

-- name: try_lock_budgeted
SELECT pg_try_advisory_xact_lock(hashtextextended('conveyor budgeted job ' || :job, 0));

-- name: held_by_another
SELECT EXISTS (
    SELECT 1 FROM conveyor_items
    WHERE job_id = :job AND state = 'running' AND worker <> :worker);

-- name: claim_items
-- SKIP LOCKED: workers claiming at once take disjoint items without waiting for each other.
WITH picked AS (
    SELECT idx FROM conveyor_items
    WHERE job_id = :job AND state = 'pending'
    ORDER BY idx LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE conveyor_items AS i SET state = 'running', worker = :worker, started_at = :now
FROM picked
WHERE i.job_id = :job AND i.idx = picked.idx
RETURNING i.idx, i.input, i.attempts;

-- name: record_items
-- One statement for a whole batch: only items still running under this worker are touched
-- (a worker that lost its lease writes nothing), and each is written once: the guard
-- state = 'running' fails for an item already settled.
UPDATE conveyor_items AS i
SET state = r.state, attempts = i.attempts + r.attempts, latency_s = r.latency_s,
    result = r.result, error_type = r.error_type, error_message = r.error_message,
    finished_at = :now, worker = NULL
FROM unnest(:idx::integer[], :state::text[], :attempts::integer[], :latency::float8[],
            :result::text[], :etype::text[], :emsg::text[])
     AS r(idx, state, attempts, latency_s, result, error_type, error_message)
WHERE i.job_id = :job AND i.idx = r.idx AND i.state = 'running' AND i.worker = :worker
RETURNING i.idx, r.state, r.latency_s;

-- name: lock_hist
SELECT latency_hist FROM conveyor_jobs WHERE id = :job FOR UPDATE;

-- name: jobs_of_worker
SELECT DISTINCT job_id FROM conveyor_items WHERE state = 'running' AND worker = :worker;

-- name: count_started
-- An attempt counts when the item starts (reported in batches by the worker), so items that
-- were claimed but never started count none when their worker dies.
UPDATE conveyor_items SET attempts = attempts + 1
WHERE job_id = :job AND idx = ANY(:idx::integer[]) AND state = 'running' AND worker = :worker;

-- name: unrun_some
UPDATE conveyor_items
SET state = CASE WHEN :cancel THEN 'cancelled' ELSE 'pending' END, worker = NULL,
    finished_at = CASE WHEN :cancel THEN :now ELSE NULL END
WHERE job_id = :job AND idx = ANY(:idx::integer[]) AND state = 'running' AND worker = :worker;

-- name: take_expired_workers
-- Several live workers may look at once: each lapsed lease is taken by one of them.
DELETE FROM conveyor_workers
WHERE id IN (
    SELECT id FROM conveyor_workers WHERE lease_until < :now FOR UPDATE SKIP LOCKED
)
RETURNING id;

-- name: failed_items
-- Locked until the commit: the retry that follows moves exactly these items.
SELECT idx, latency_s FROM conveyor_items
WHERE job_id = :job AND state = 'failed'
FOR UPDATE;

-- name: retry_items
UPDATE conveyor_items SET state = 'pending', error_type = NULL, error_message = NULL,
       latency_s = NULL, finished_at = NULL
WHERE job_id = :job AND idx = ANY(:idx::integer[]) AND state = 'failed';

-- name: any_active
SELECT EXISTS (
    SELECT 1 FROM conveyor_jobs WHERE status IN ('queued', 'running', 'cancelling')
);

-- Files and batch records (conveyor.jobs.stores.file_rules) ---------------------------------

-- name: lock_batch
-- Held until the commit: every change of a batch (expiry, cancel, the claim to finalize it,
-- its final state) reads it under this lock, so changes from any instance take turns.
SELECT id, tenant, kind, job_id, created_at, expires_at, ended, record FROM conveyor_batches
WHERE id = :id AND tenant = :tenant AND kind = :kind
FOR UPDATE;

-- name: due_batches
-- Batches of one kind whose outcome is not final and whose time is up (at :due).
SELECT id, tenant, kind, job_id, created_at, expires_at, ended, record FROM conveyor_batches
WHERE kind = :kind AND NOT ended AND expires_at <= :due
ORDER BY expires_at, id;

-- name: next_due
SELECT min(expires_at) FROM conveyor_batches
WHERE kind = :kind AND NOT ended AND expires_at > :due;

-- name: worker_leases
-- Each worker holding a lease, with each job it runs items of now and how many (a worker with
-- none: one row, job NULL). Read through the running jobs, whose running items are indexed.
SELECT w.id, w.lease_until, r.job_id, count(r.idx)
FROM conveyor_workers AS w LEFT JOIN (
    SELECT items.worker, items.job_id, items.idx FROM conveyor_jobs AS jobs
    JOIN conveyor_items AS items ON items.job_id = jobs.id AND items.state = 'running'
    WHERE jobs.running > 0) AS r ON r.worker = w.id
GROUP BY w.id, w.lease_until, r.job_id ORDER BY w.id, r.job_id;
