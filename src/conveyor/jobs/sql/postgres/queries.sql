-- The PostgreSQL store's statements, by name (read by conveyor.jobs.stores.postgres_schema,
-- which turns the :named parameters into asyncpg's $1, $2, ...). The SQLite dialect
-- (../sqlite/queries.sql) has the same names, run by the same rules
-- (conveyor.jobs.stores.rules). :now is the store clock's Unix time, or NULL for the
-- database's own clock (the default: one clock for every machine); the loader turns it into
-- COALESCE(:now, the transaction's time on the database).
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

-- name: job_by_key
SELECT id FROM conveyor_jobs WHERE tenant = :tenant AND idempotency_key = :key;

-- name: unfinished_of_tenant
-- The tenant's active jobs other than :id, for its limit. The status list repeats the
-- partial index conveyor_jobs_unfinished_by_tenant's, so the count reads that index only.
SELECT count(*) FROM conveyor_jobs
WHERE tenant = :tenant AND status IN ('queued', 'running', 'cancelling') AND id <> :id;

-- name: lock_tenant
-- Creates of one tenant with a limit, and retries that reopen one of its completed jobs, take
-- turns here, as the last step of their transactions, to count its active jobs: each count
-- then sees every one that passed before it (they committed before letting go of the lock).
-- Its holder only counts and commits, waiting for nothing else: no cycle of waits can form
-- with the row locks.
SELECT pg_advisory_xact_lock(hashtextextended('conveyor tenant ' || :tenant, 0));

-- name: set_total
UPDATE conveyor_jobs SET total = :n, pending = :n WHERE id = :id;

-- name: get_job
SELECT id, task, options, status, step, inflight, total, pending, running, succeeded, failed,
       cancelled, latency_total_s, created_at, started_at, finished_at, error, tenant,
       idempotency_key, version, latency_hist, request_hash
FROM conveyor_jobs WHERE id = :id;

-- name: list_jobs
SELECT id, task, options, status, step, inflight, total, pending, running, succeeded, failed,
       cancelled, latency_total_s, created_at, started_at, finished_at, error, tenant,
       idempotency_key, version, latency_hist, request_hash
FROM conveyor_jobs
WHERE (:before::text IS NULL OR id < :before)
  AND (:tenant::text IS NULL OR tenant = :tenant)
  AND (:status::text IS NULL OR status = :status)
  AND (:task::text IS NULL OR task = :task)
ORDER BY id DESC LIMIT :limit;

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

-- name: count_claim
-- The status guard: a job cancelled while the claim took its items keeps its status (the
-- items then come back as cancelled when the worker sees the cancel).
UPDATE conveyor_jobs SET pending = pending - :n, running = running + :n,
       status = CASE WHEN status = 'queued' THEN 'running' ELSE status END,
       started_at = COALESCE(started_at, :now)
WHERE id = :job;

-- name: hold_lease
INSERT INTO conveyor_workers (id, lease_until) VALUES (:worker, :now + :lease_s)
ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until;

-- name: renew_lease
UPDATE conveyor_workers SET lease_until = :now + :lease_s WHERE id = :worker;

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

-- name: count_settled
-- As in count_unrun: a running job that no worker runs any more (the last worker's items
-- settled after it handed the unstarted ones back) is queued again.
UPDATE conveyor_jobs SET running = running - :n, succeeded = succeeded + :succeeded,
       failed = failed + :failed, cancelled = cancelled + :cancelled,
       latency_total_s = latency_total_s + :latency, latency_hist = :hist,
       status = CASE WHEN status = 'running' AND running - :n = 0 AND pending > 0
                     THEN 'queued' ELSE status END
WHERE id = :job;

-- name: settle_counts
-- What the settle rule (conveyor.jobs.settle) decides from: the job's status and counts.
SELECT status, total, pending, running, succeeded, failed, cancelled FROM conveyor_jobs WHERE id = :job;

-- name: first_failure
SELECT idx, error_type, error_message FROM conveyor_items
WHERE job_id = :job AND state = 'failed' ORDER BY idx LIMIT 1;

-- name: settle_job
-- The status, error and step the settle rule gave a job with nothing left to run.
UPDATE conveyor_jobs SET status = :status, error = :error, step = :step, finished_at = :now, inflight = 0
WHERE id = :job AND pending = 0 AND running = 0
  AND status IN ('queued', 'running', 'cancelling');

-- name: status_of
SELECT status FROM conveyor_jobs WHERE id = :job;

-- name: jobs_of_worker
SELECT DISTINCT job_id FROM conveyor_items WHERE state = 'running' AND worker = :worker;

-- name: count_started
-- An attempt counts when the item starts (reported in batches by the worker), so items that
-- were claimed but never started count none when their worker dies.
UPDATE conveyor_items SET attempts = attempts + 1
WHERE job_id = :job AND idx = ANY(:idx::integer[]) AND state = 'running' AND worker = :worker;

-- name: unrun_all
-- Every running item of the worker in one job goes back: to pending, or to cancelled when
-- the job is being cancelled.
UPDATE conveyor_items
SET state = CASE WHEN :cancel THEN 'cancelled' ELSE 'pending' END, worker = NULL,
    finished_at = CASE WHEN :cancel THEN :now ELSE NULL END
WHERE job_id = :job AND state = 'running' AND worker = :worker;

-- name: unrun_some
UPDATE conveyor_items
SET state = CASE WHEN :cancel THEN 'cancelled' ELSE 'pending' END, worker = NULL,
    finished_at = CASE WHEN :cancel THEN :now ELSE NULL END
WHERE job_id = :job AND idx = ANY(:idx::integer[]) AND state = 'running' AND worker = :worker;

-- name: count_unrun
-- A running job whose items all went back (its workers stopped or died) is queued again:
-- "running" means a worker has it.
UPDATE conveyor_jobs SET running = running - :n, pending = pending + :pending,
       cancelled = cancelled + :cancelled,
       status = CASE WHEN status = 'running' AND running - :n = 0 AND :pending > 0
                     THEN 'queued' ELSE status END
WHERE id = :job;

-- name: drop_lease
DELETE FROM conveyor_workers WHERE id = :worker;

-- name: take_expired_workers
-- Several live workers may look at once: each lapsed lease is taken by one of them.
DELETE FROM conveyor_workers
WHERE id IN (
    SELECT id FROM conveyor_workers WHERE lease_until < :now FOR UPDATE SKIP LOCKED
)
RETURNING id;

-- name: cancel_pending
UPDATE conveyor_items SET state = 'cancelled', finished_at = :now
WHERE job_id = :job AND state = 'pending';

-- name: count_cancel
UPDATE conveyor_jobs SET pending = pending - :n, cancelled = cancelled + :n,
       status = 'cancelling'
WHERE id = :job;

-- name: failed_items
-- Locked until the commit: the retry that follows moves exactly these items.
SELECT idx, latency_s FROM conveyor_items
WHERE job_id = :job AND state = 'failed'
FOR UPDATE;

-- name: retry_items
UPDATE conveyor_items SET state = 'pending', error_type = NULL, error_message = NULL,
       latency_s = NULL, finished_at = NULL
WHERE job_id = :job AND idx = ANY(:idx::integer[]) AND state = 'failed';

-- name: count_retry
UPDATE conveyor_jobs SET failed = failed - :n, pending = pending + :n,
       latency_total_s = latency_total_s - :latency, latency_hist = :hist,
       -- A job that ended (completed, or failed by its items) reopens: queued, without
       -- the error and the final step of its end.
       status = CASE WHEN status IN ('completed', 'failed') THEN 'queued' ELSE status END,
       error = CASE WHEN status IN ('completed', 'failed') THEN NULL ELSE error END,
       step = CASE WHEN status IN ('completed', 'failed') THEN NULL ELSE step END,
       -- A completed job's start moves forward by its idle time (finished -> now), so the
       -- summary's duration counts the time it ran, not the time it waited for the retry.
       started_at = CASE WHEN finished_at IS NULL THEN started_at
                         ELSE started_at + greatest(0, :now - finished_at) END,
       finished_at = NULL
WHERE id = :job;

-- name: fail_items
UPDATE conveyor_items SET state = 'cancelled', worker = NULL, finished_at = :now
WHERE job_id = :job AND state IN ('pending', 'running');

-- name: fail_job
UPDATE conveyor_jobs SET status = 'failed', error = :error, step = :step,
       finished_at = :now,
       cancelled = cancelled + pending + running, pending = 0, running = 0, inflight = 0
WHERE id = :job;

-- name: set_options
-- A new spend budget (the options are the job's, with max_cost_usd changed).
UPDATE conveyor_jobs SET options = :options WHERE id = :job;

-- name: set_progress
-- A NULL step keeps the job's step; an empty one clears it (a wait that is over).
UPDATE conveyor_jobs SET inflight = :inflight,
    step = CASE WHEN :step::text IS NULL THEN step ELSE NULLIF(:step::text, '') END
WHERE id = :job AND status NOT IN ('completed', 'failed', 'cancelled');

-- name: items_page
SELECT idx, input, state, attempts, result, error_type, error_message, latency_s, started_at,
       finished_at
FROM conveyor_items WHERE job_id = :job AND idx > :after ORDER BY idx LIMIT :limit;

-- name: items_page_by_state
SELECT idx, input, state, attempts, result, error_type, error_message, latency_s, started_at,
       finished_at
FROM conveyor_items
WHERE job_id = :job AND state = :state AND idx > :after ORDER BY idx LIMIT :limit;

-- name: any_active
SELECT EXISTS (
    SELECT 1 FROM conveyor_jobs WHERE status IN ('queued', 'running', 'cancelling')
);

-- Files and batch records (conveyor.jobs.stores.file_rules) ---------------------------------

-- name: insert_upload
INSERT INTO conveyor_files (id, tenant, filename, purpose, created_at, touched_at)
VALUES (:id, :tenant, :filename, :purpose, :created, :now);

-- name: touch_upload
-- Counts the chunk about to be written, if the upload is still there (not swept, not
-- discarded): the row stays locked until the commit, so a sweep waits for it, then sees it
-- was touched.
UPDATE conveyor_files SET chunks = chunks + 1, touched_at = :now
WHERE id = :id AND state = 'uploading' AND chunks = :seq;

-- name: insert_chunk
INSERT INTO conveyor_file_chunks (file_id, seq, data) VALUES (:id, :seq, :data);

-- name: publish_file
UPDATE conveyor_files SET state = 'ready', bytes = :bytes, items = :items
WHERE id = :id AND state = 'uploading' AND chunks = :chunks;

-- name: discard_upload
-- An upload that failed, or whose answer was lost (made visible, then cancelled before its
-- client heard of it): removed whatever its state, since nobody has its id.
DELETE FROM conveyor_files WHERE id = :id;

-- name: delete_chunks
DELETE FROM conveyor_file_chunks WHERE file_id = :id;

-- name: insert_ready_file
-- A whole file at once (`conveyor db upgrade` importing a files folder); its chunks follow.
INSERT INTO conveyor_files (id, tenant, state, filename, purpose, bytes, items, chunks,
                            created_at, touched_at)
VALUES (:id, :tenant, 'ready', :filename, :purpose, :bytes, :items, :chunks, :created,
        :created);

-- name: file_exists
SELECT 1 FROM conveyor_files WHERE id = :id;

-- name: get_file
SELECT id, tenant, filename, purpose, bytes, items, chunks, created_at FROM conveyor_files
WHERE id = :id AND tenant = :tenant AND state = 'ready';

-- name: list_files
-- Newest first; :purpose NULL: every purpose.
SELECT id, tenant, filename, purpose, bytes, items, chunks, created_at FROM conveyor_files
WHERE tenant = :tenant AND state = 'ready'
  AND (:purpose::text IS NULL OR purpose = :purpose::text)
ORDER BY created_at DESC, id DESC;

-- name: delete_file
DELETE FROM conveyor_files WHERE id = :id AND tenant = :tenant AND state = 'ready';

-- name: file_chunk
SELECT data FROM conveyor_file_chunks WHERE file_id = :id AND seq = :seq;

-- name: idle_uploads
-- Uploads whose last chunk is older than :idle_s (their process died, or their client
-- stalled): removed with their chunks. An upload writing a chunk holds its row: the delete
-- waits for it, then finds it touched, and leaves it.
DELETE FROM conveyor_files WHERE state = 'uploading' AND touched_at < :now - :idle_s::float8
RETURNING id;

-- name: insert_batch
INSERT INTO conveyor_batches (id, tenant, kind, job_id, created_at, expires_at, ended, record)
VALUES (:id, :tenant, :kind, :job, :created, :expires, :ended, :record);

-- name: batch_exists
SELECT 1 FROM conveyor_batches WHERE id = :id;

-- name: get_batch
SELECT id, tenant, kind, job_id, created_at, expires_at, ended, record FROM conveyor_batches
WHERE id = :id AND tenant = :tenant AND kind = :kind;

-- name: lock_batch
-- Held until the commit: every change of a batch (expiry, cancel, the claim to finalize it,
-- its final state) reads it under this lock, so changes from any instance take turns.
SELECT id, tenant, kind, job_id, created_at, expires_at, ended, record FROM conveyor_batches
WHERE id = :id AND tenant = :tenant AND kind = :kind
FOR UPDATE;

-- name: list_batches
SELECT id, tenant, kind, job_id, created_at, expires_at, ended, record FROM conveyor_batches
WHERE tenant = :tenant AND kind = :kind
ORDER BY created_at DESC, id DESC;

-- name: update_batch
UPDATE conveyor_batches SET job_id = :job, ended = :ended, record = :record WHERE id = :id;

-- name: delete_batch
DELETE FROM conveyor_batches WHERE id = :id;

-- name: due_batches
-- Batches of one kind whose outcome is not final and whose time is up (at :due).
SELECT id, tenant, kind, job_id, created_at, expires_at, ended, record FROM conveyor_batches
WHERE kind = :kind AND NOT ended AND expires_at <= :due
ORDER BY expires_at, id;

-- name: next_due
SELECT min(expires_at) FROM conveyor_batches
WHERE kind = :kind AND NOT ended AND expires_at > :due;

-- name: tenants_of_jobs
SELECT DISTINCT tenant FROM conveyor_jobs;

-- name: add_rate
INSERT INTO conveyor_job_rates (job_id, second, settled) VALUES (:job, :second, :n)
ON CONFLICT (job_id, second) DO UPDATE SET settled = conveyor_job_rates.settled + excluded.settled;

-- name: rate_series
SELECT second, settled FROM conveyor_job_rates WHERE job_id = :job ORDER BY second;

-- name: worker_leases
-- Each worker holding a lease, with each job it runs items of now and how many (a worker with
-- none: one row, job NULL). Read through the running jobs, whose running items are indexed.
SELECT w.id, w.lease_until, r.job_id, count(r.idx)
FROM conveyor_workers AS w LEFT JOIN (
    SELECT items.worker, items.job_id, items.idx FROM conveyor_jobs AS jobs
    JOIN conveyor_items AS items ON items.job_id = jobs.id AND items.state = 'running'
    WHERE jobs.running > 0) AS r ON r.worker = w.id
GROUP BY w.id, w.lease_until, r.job_id ORDER BY w.id, r.job_id;

-- name: jobs_overview
SELECT status, COUNT(*), COALESCE(SUM(pending), 0), COALESCE(SUM(running), 0),
       MIN(CASE WHEN status = 'queued' THEN created_at END)
FROM conveyor_jobs GROUP BY status;
