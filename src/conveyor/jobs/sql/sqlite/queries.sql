-- The SQLite store's statements, by name (read by conveyor.jobs.stores.sqlite_schema). The
-- PostgreSQL dialect (../postgres/queries.sql) has the same names, run by the same rules
-- (conveyor.jobs.stores.rules). Parameters are named; a list is bound as JSON text (read with
-- json_each); :now is the store clock's Unix time.
--
-- Every write transaction is BEGIN IMMEDIATE: it runs alone, from its first statement to its
-- commit, against every other writer of the file. So what a transaction reads stays true
-- until it commits, and the locks PostgreSQL needs (lock_tenant, lock_budgeted) are no-ops.

-- name: insert_job
-- The job's id (an idempotency key is looked up first, in the same transaction).
INSERT INTO jobs (id, task, options, status, created_at, tenant, idempotency_key, request_hash)
VALUES (:id, :task, :options, 'queued', :now, :tenant, :key, :hash)
RETURNING id;

-- name: job_by_key
SELECT id FROM jobs WHERE tenant = :tenant AND idempotency_key = :key;

-- name: unfinished_of_tenant
-- The tenant's active jobs other than :id, for its limit. The status list repeats the partial
-- index jobs_unfinished_by_tenant's word for word, so SQLite uses that index.
SELECT count(*) FROM jobs
WHERE tenant = :tenant AND status IN ('queued', 'running', 'cancelling') AND id <> :id;

-- name: lock_tenant
-- Nothing to lock: the write transaction runs alone (see the top of this file).
SELECT 1;

-- name: insert_item
INSERT INTO items (job_id, idx, input) VALUES (?, ?, ?);

-- name: set_total
UPDATE jobs SET total = :n, pending = :n WHERE id = :id;

-- name: get_job
SELECT id, task, options, status, step, inflight, total, pending, running, succeeded, failed,
       cancelled, latency_total_s, created_at, started_at, finished_at, error, tenant,
       idempotency_key, version, latency_hist, request_hash
FROM jobs WHERE id = :id;

-- name: list_jobs
-- Newest first, after the cursor :before (an id; NULL: from the newest), optionally of one
-- tenant, status and task. Each filter is NULL when not asked for.
SELECT id, task, options, status, step, inflight, total, pending, running, succeeded, failed,
       cancelled, latency_total_s, created_at, started_at, finished_at, error, tenant,
       idempotency_key, version, latency_hist, request_hash
FROM jobs
WHERE (:before IS NULL OR id < :before)
  AND (:tenant IS NULL OR tenant = :tenant)
  AND (:status IS NULL OR status = :status)
  AND (:task IS NULL OR task = :task)
ORDER BY id DESC LIMIT :limit;

-- name: next_job
-- :tasks: the task names the worker has (NULL: any task); :skip: jobs to pass over. A job with
-- a spend budget runs on one worker at a time: while another worker has items of it running,
-- it is not claimed (so the budget is counted in one place and kept exactly). The second
-- column says whether the job has a budget. INDEXED BY: with no statistics (no ANALYZE)
-- SQLite would read every item of the job by its primary key.
SELECT id, json_extract(options, '$.max_cost_usd') IS NOT NULL FROM jobs
WHERE status IN ('queued', 'running') AND pending > 0
  AND (:tasks IS NULL OR task IN (SELECT value FROM json_each(:tasks)))
  AND (:skip IS NULL OR id NOT IN (SELECT value FROM json_each(:skip)))
  AND NOT (json_extract(options, '$.max_cost_usd') IS NOT NULL AND running > 0 AND EXISTS (
      SELECT 1 FROM items INDEXED BY items_by_state
      WHERE items.job_id = jobs.id AND items.state = 'running' AND items.worker != :worker))
ORDER BY id LIMIT 1;

-- name: this_job
SELECT id, json_extract(options, '$.max_cost_usd') IS NOT NULL FROM jobs
WHERE id = :id AND status IN ('queued', 'running') AND pending > 0
  AND (:tasks IS NULL OR task IN (SELECT value FROM json_each(:tasks)))
  AND NOT (json_extract(options, '$.max_cost_usd') IS NOT NULL AND running > 0 AND EXISTS (
      SELECT 1 FROM items INDEXED BY items_by_state
      WHERE items.job_id = jobs.id AND items.state = 'running' AND items.worker != :worker));

-- name: lock_budgeted
-- Nothing to lock: the write transaction runs alone (see the top of this file).
SELECT 1;

-- name: try_lock_budgeted
SELECT 1;

-- name: held_by_another
SELECT EXISTS (
    SELECT 1 FROM items INDEXED BY items_by_state
    WHERE job_id = :job AND state = 'running' AND worker != :worker);

-- name: claim_items
UPDATE items SET state = 'running', worker = :worker, started_at = :now
WHERE job_id = :job AND state = 'pending' AND idx IN (
    SELECT idx FROM items WHERE job_id = :job AND state = 'pending' ORDER BY idx LIMIT :limit
)
RETURNING idx, input, attempts;

-- name: count_claim
UPDATE jobs SET pending = pending - :n, running = running + :n,
                status = CASE WHEN status = 'queued' THEN 'running' ELSE status END,
                started_at = COALESCE(started_at, :now)
WHERE id = :job;

-- name: hold_lease
INSERT INTO workers (id, lease_until) VALUES (:worker, :now + :lease_s)
ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until;

-- name: renew_lease
UPDATE workers SET lease_until = :now + :lease_s WHERE id = :worker;

-- name: record_item
-- One item of a batch (run for each; see SqliteConnection.record_items): written only while
-- it is still running under this worker, so a worker that lost its lease writes nothing.
UPDATE items SET state = ?, attempts = attempts + ?, latency_s = ?, result = ?, error_type = ?,
                 error_message = ?, finished_at = ?, worker = NULL
WHERE job_id = ? AND idx = ? AND state = 'running' AND worker = ?;

-- name: lock_hist
SELECT latency_hist FROM jobs WHERE id = :job;

-- name: count_settled
-- As in count_unrun: a running job that no worker runs any more (the last worker's items
-- settled after it handed the unstarted ones back) is queued again.
UPDATE jobs SET running = running - :n, succeeded = succeeded + :succeeded,
                failed = failed + :failed, cancelled = cancelled + :cancelled,
                latency_total_s = latency_total_s + :latency, latency_hist = :hist,
                status = CASE WHEN status = 'running' AND running - :n = 0 AND pending > 0
                              THEN 'queued' ELSE status END
WHERE id = :job;

-- name: settle_counts
-- What the settle rule (conveyor.jobs.settle) decides from: the job's status and counts.
SELECT status, total, pending, running, succeeded, failed, cancelled FROM jobs WHERE id = :job;

-- name: first_failure
SELECT idx, error_type, error_message FROM items
WHERE job_id = :job AND state = 'failed' ORDER BY idx LIMIT 1;

-- name: settle_job
-- The status, error and step the settle rule gave a job with nothing left to run.
UPDATE jobs SET status = :status, error = :error, step = :step, finished_at = :now, inflight = 0
WHERE id = :job AND pending = 0 AND running = 0
  AND status IN ('queued', 'running', 'cancelling');

-- name: status_of
SELECT status FROM jobs WHERE id = :job;

-- name: jobs_of_worker
SELECT id FROM jobs WHERE running > 0 AND EXISTS (
    SELECT 1 FROM items INDEXED BY items_by_state
    WHERE items.job_id = jobs.id AND items.state = 'running' AND items.worker = :worker);

-- name: count_started
-- An attempt counts when the item starts (reported in batches by the worker), so items that
-- were claimed but never started count none when their worker dies.
UPDATE items SET attempts = attempts + 1
WHERE job_id = :job AND idx IN (SELECT value FROM json_each(:idx))
  AND state = 'running' AND worker = :worker;

-- name: unrun_all
-- Every running item of the worker in one job goes back: to pending, or to cancelled when
-- the job is being cancelled.
UPDATE items
SET state = CASE WHEN :cancel THEN 'cancelled' ELSE 'pending' END, worker = NULL,
    finished_at = CASE WHEN :cancel THEN :now ELSE NULL END
WHERE job_id = :job AND state = 'running' AND worker = :worker;

-- name: unrun_some
UPDATE items
SET state = CASE WHEN :cancel THEN 'cancelled' ELSE 'pending' END, worker = NULL,
    finished_at = CASE WHEN :cancel THEN :now ELSE NULL END
WHERE job_id = :job AND idx IN (SELECT value FROM json_each(:idx))
  AND state = 'running' AND worker = :worker;

-- name: count_unrun
-- A running job whose items all went back (its workers stopped or died) is queued again:
-- "running" means a worker has it.
UPDATE jobs SET running = running - :n, pending = pending + :pending,
                cancelled = cancelled + :cancelled,
                status = CASE WHEN status = 'running' AND running - :n = 0 AND :pending > 0
                              THEN 'queued' ELSE status END
WHERE id = :job;

-- name: drop_lease
DELETE FROM workers WHERE id = :worker;

-- name: take_expired_workers
DELETE FROM workers WHERE lease_until < :now RETURNING id;

-- name: cancel_pending
UPDATE items SET state = 'cancelled', finished_at = :now
WHERE job_id = :job AND state = 'pending';

-- name: count_cancel
UPDATE jobs SET pending = pending - :n, cancelled = cancelled + :n, status = 'cancelling'
WHERE id = :job;

-- name: failed_items
SELECT idx, latency_s FROM items WHERE job_id = :job AND state = 'failed';

-- name: retry_items
UPDATE items SET state = 'pending', error_type = NULL, error_message = NULL, latency_s = NULL,
                 finished_at = NULL
WHERE job_id = :job AND idx IN (SELECT value FROM json_each(:idx)) AND state = 'failed';

-- name: count_retry
-- A completed job's start moves forward by its idle time (finished -> now), so the summary's
-- duration counts the time it ran, not the time it waited for the retry.
UPDATE jobs SET failed = failed - :n, pending = pending + :n,
                latency_total_s = latency_total_s - :latency, latency_hist = :hist,
                -- A job that ended (completed, or failed by its items) reopens: queued,
                -- without the error and the final step of its end.
                status = CASE WHEN status IN ('completed', 'failed') THEN 'queued' ELSE status END,
                error = CASE WHEN status IN ('completed', 'failed') THEN NULL ELSE error END,
                step = CASE WHEN status IN ('completed', 'failed') THEN NULL ELSE step END,
                started_at = CASE WHEN finished_at IS NULL THEN started_at
                                  ELSE started_at + max(0, :now - finished_at) END,
                finished_at = NULL
WHERE id = :job;

-- name: fail_items
UPDATE items SET state = 'cancelled', worker = NULL, finished_at = :now
WHERE job_id = :job AND state IN ('pending', 'running');

-- name: fail_job
UPDATE jobs SET status = 'failed', error = :error, step = :step, finished_at = :now,
                cancelled = cancelled + pending + running, pending = 0, running = 0, inflight = 0
WHERE id = :job;

-- name: set_options
-- A new spend budget (the options are the job's, with max_cost_usd changed).
UPDATE jobs SET options = :options WHERE id = :job;

-- name: set_progress
-- A NULL step keeps the job's step; an empty one clears it (a wait that is over).
UPDATE jobs SET inflight = :inflight, step = CASE WHEN :step IS NULL THEN step ELSE NULLIF(:step, '') END
WHERE id = :job AND status NOT IN ('completed', 'failed', 'cancelled');

-- name: items_page
SELECT idx, input, state, attempts, result, error_type, error_message, latency_s, started_at,
       finished_at
FROM items WHERE job_id = :job AND idx > :after ORDER BY idx LIMIT :limit;

-- name: items_page_by_state
SELECT idx, input, state, attempts, result, error_type, error_message, latency_s, started_at,
       finished_at
FROM items WHERE job_id = :job AND state = :state AND idx > :after ORDER BY idx LIMIT :limit;

-- Files and batch records (conveyor.jobs.stores.file_rules) ---------------------------------

-- name: insert_upload
INSERT INTO files (id, tenant, filename, purpose, created_at, touched_at)
VALUES (:id, :tenant, :filename, :purpose, :created, :now);

-- name: touch_upload
-- Counts the chunk about to be written, if the upload is still there (not swept, not
-- discarded): no other writer then touches its rows until the commit.
UPDATE files SET chunks = chunks + 1, touched_at = :now
WHERE id = :id AND state = 'uploading' AND chunks = :seq;

-- name: insert_chunk
INSERT INTO file_chunks (file_id, seq, data) VALUES (:id, :seq, :data);

-- name: publish_file
UPDATE files SET state = 'ready', bytes = :bytes, items = :items
WHERE id = :id AND state = 'uploading' AND chunks = :chunks;

-- name: discard_upload
-- An upload that failed, or whose answer was lost (made visible, then cancelled before its
-- client heard of it): removed whatever its state, since nobody has its id.
DELETE FROM files WHERE id = :id;

-- name: delete_chunks
DELETE FROM file_chunks WHERE file_id = :id;

-- name: insert_ready_file
-- A whole file at once (`conveyor db upgrade` importing a files folder); its chunks follow.
INSERT INTO files (id, tenant, state, filename, purpose, bytes, items, chunks, created_at,
                   touched_at)
VALUES (:id, :tenant, 'ready', :filename, :purpose, :bytes, :items, :chunks, :created,
        :created);

-- name: file_exists
SELECT 1 FROM files WHERE id = :id;

-- name: get_file
SELECT id, tenant, filename, purpose, bytes, items, chunks, created_at FROM files
WHERE id = :id AND tenant = :tenant AND state = 'ready';

-- name: list_files
-- Newest first; :purpose NULL: every purpose.
SELECT id, tenant, filename, purpose, bytes, items, chunks, created_at FROM files
WHERE tenant = :tenant AND state = 'ready' AND (:purpose IS NULL OR purpose = :purpose)
ORDER BY created_at DESC, id DESC;

-- name: delete_file
DELETE FROM files WHERE id = :id AND tenant = :tenant AND state = 'ready';

-- name: file_chunk
SELECT data FROM file_chunks WHERE file_id = :id AND seq = :seq;

-- name: idle_uploads
-- Uploads whose last chunk is older than :idle_s (their process died, or their client
-- stalled): removed with their chunks.
DELETE FROM files WHERE state = 'uploading' AND touched_at < :now - :idle_s
RETURNING id;

-- name: insert_batch
INSERT INTO batches (id, tenant, kind, job_id, created_at, expires_at, ended, record)
VALUES (:id, :tenant, :kind, :job, :created, :expires, :ended, :record);

-- name: batch_exists
SELECT 1 FROM batches WHERE id = :id;

-- name: get_batch
SELECT id, tenant, kind, job_id, created_at, expires_at, ended, record FROM batches
WHERE id = :id AND tenant = :tenant AND kind = :kind;

-- name: lock_batch
-- Nothing to lock: the write transaction runs alone (see the top of this file).
SELECT id, tenant, kind, job_id, created_at, expires_at, ended, record FROM batches
WHERE id = :id AND tenant = :tenant AND kind = :kind;

-- name: list_batches
SELECT id, tenant, kind, job_id, created_at, expires_at, ended, record FROM batches
WHERE tenant = :tenant AND kind = :kind
ORDER BY created_at DESC, id DESC;

-- name: update_batch
UPDATE batches SET job_id = :job, ended = :ended, record = :record WHERE id = :id;

-- name: delete_batch
DELETE FROM batches WHERE id = :id;

-- name: due_batches
-- Batches of one kind whose outcome is not final and whose time is up (at :due).
SELECT id, tenant, kind, job_id, created_at, expires_at, ended, record FROM batches
WHERE kind = :kind AND ended = 0 AND expires_at <= :due
ORDER BY expires_at, id;

-- name: next_due
SELECT min(expires_at) FROM batches WHERE kind = :kind AND ended = 0 AND expires_at > :due;

-- name: tenants_of_jobs
SELECT DISTINCT tenant FROM jobs;

-- name: add_rate
INSERT INTO job_rates (job_id, second, settled) VALUES (:job, :second, :n)
ON CONFLICT (job_id, second) DO UPDATE SET settled = settled + excluded.settled;

-- name: rate_series
SELECT second, settled FROM job_rates WHERE job_id = :job ORDER BY second;

-- name: worker_leases
-- Each worker holding a lease, with each job it runs items of now and how many (a worker with
-- none: one row, job NULL). Read through the running jobs, whose running items are indexed.
SELECT w.id, w.lease_until, r.job_id, count(r.idx)
FROM workers AS w LEFT JOIN (
    SELECT items.worker, items.job_id, items.idx FROM jobs
    JOIN items INDEXED BY items_by_state ON items.job_id = jobs.id AND items.state = 'running'
    WHERE jobs.running > 0) AS r ON r.worker = w.id
GROUP BY w.id, w.lease_until, r.job_id ORDER BY w.id, r.job_id;

-- name: jobs_overview
SELECT status, COUNT(*), COALESCE(SUM(pending), 0), COALESCE(SUM(running), 0),
       MIN(CASE WHEN status = 'queued' THEN created_at END)
FROM jobs GROUP BY status;
