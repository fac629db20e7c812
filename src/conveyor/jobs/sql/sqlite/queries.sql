-- The SQLite store's own statements, by name: those of ../common/queries.sql that each
-- dialect writes, and the bulk writes of SqliteConnection (insert_item, record_item); the
-- loader (conveyor.jobs.stores.sql_files) adds the common ones. Parameters are named; a list
-- is bound as JSON text (read with json_each); :now is the store clock's Unix time.
--
-- Every write transaction is BEGIN IMMEDIATE: it runs alone, from its first statement to its
-- commit, against every other writer of the file. So what a transaction reads stays true
-- until it commits, and the locks PostgreSQL needs (lock_tenant, lock_budgeted) are no-ops.

-- name: insert_job
-- The job's id (an idempotency key is looked up first, in the same transaction).
INSERT INTO jobs (id, task, options, status, created_at, tenant, idempotency_key, request_hash)
VALUES (:id, :task, :options, 'queued', :now, :tenant, :key, :hash)
RETURNING id;

-- name: lock_tenant
-- Nothing to lock: the write transaction runs alone (see the top of this file).
SELECT 1;

-- name: insert_item
INSERT INTO items (job_id, idx, input) VALUES (?, ?, ?);

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

-- name: record_item
-- One item of a batch (run for each; see SqliteConnection.record_items): written only while
-- it is still running under this worker, so a worker that lost its lease writes nothing.
UPDATE items SET state = ?, attempts = attempts + ?, latency_s = ?, result = ?, error_type = ?,
                 error_message = ?, finished_at = ?, worker = NULL
WHERE job_id = ? AND idx = ? AND state = 'running' AND worker = ?;

-- name: lock_hist
SELECT latency_hist FROM jobs WHERE id = :job;

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

-- name: unrun_some
UPDATE items
SET state = CASE WHEN :cancel THEN 'cancelled' ELSE 'pending' END, worker = NULL,
    finished_at = CASE WHEN :cancel THEN :now ELSE NULL END
WHERE job_id = :job AND idx IN (SELECT value FROM json_each(:idx))
  AND state = 'running' AND worker = :worker;

-- name: take_expired_workers
DELETE FROM workers WHERE lease_until < :now RETURNING id;

-- name: failed_items
SELECT idx, latency_s FROM items WHERE job_id = :job AND state = 'failed';

-- name: retry_items
UPDATE items SET state = 'pending', error_type = NULL, error_message = NULL, latency_s = NULL,
                 finished_at = NULL
WHERE job_id = :job AND idx IN (SELECT value FROM json_each(:idx)) AND state = 'failed';

-- Files and batch records (conveyor.jobs.stores.file_rules) ---------------------------------

-- name: lock_batch
-- Nothing to lock: the write transaction runs alone (see the top of this file).
SELECT id, tenant, kind, job_id, created_at, expires_at, ended, record FROM batches
WHERE id = :id AND tenant = :tenant AND kind = :kind;

-- name: due_batches
-- Batches of one kind whose outcome is not final and whose time is up (at :due).
SELECT id, tenant, kind, job_id, created_at, expires_at, ended, record FROM batches
WHERE kind = :kind AND ended = 0 AND expires_at <= :due
ORDER BY expires_at, id;

-- name: next_due
SELECT min(expires_at) FROM batches WHERE kind = :kind AND ended = 0 AND expires_at > :due;

-- name: worker_leases
-- Each worker holding a lease, with each job it runs items of now and how many (a worker with
-- none: one row, job NULL). Read through the running jobs, whose running items are indexed.
SELECT w.id, w.lease_until, r.job_id, count(r.idx)
FROM workers AS w LEFT JOIN (
    SELECT items.worker, items.job_id, items.idx FROM jobs
    JOIN items INDEXED BY items_by_state ON items.job_id = jobs.id AND items.state = 'running'
    WHERE jobs.running > 0) AS r ON r.worker = w.id
GROUP BY w.id, w.lease_until, r.job_id ORDER BY w.id, r.job_id;
