-- The job store's statements that every dialect runs as they are, by name (read by
-- conveyor.jobs.stores.sql_files, run by the rules in conveyor.jobs.stores.rules and
-- file_rules). Each dialect's own file (../sqlite/queries.sql, ../postgres/queries.sql)
-- adds the statements that are its own, and may give its own form of any one here, by name.
--
-- {jobs}, {items}, ...: a table, by the dialect's name for it (PostgreSQL's carry the prefix
-- conveyor_, since other applications share its database). Parameters are :named; :now is the
-- store clock's Unix time (PostgreSQL: or NULL for the database's own clock). A parameter
-- that may be NULL and whose type nothing else tells is CAST: PostgreSQL must know it.
--
-- A name with no statement (a comment only) is one that each dialect writes in its own file:
-- loading a dialect whose file lacks one of them fails.

-- name: insert_job
-- The job's id; NULL when a create with the same idempotency key got there first. (Each
-- dialect's: PostgreSQL waits for that create's commit, on the unique index.)

-- name: job_by_key
SELECT id FROM {jobs} WHERE tenant = :tenant AND idempotency_key = :key;

-- name: unfinished_of_tenant
-- The tenant's active jobs other than :id, for its limit. The status list repeats the partial
-- index unfinished_by_tenant's word for word, so the count reads that index only.
SELECT count(*) FROM {jobs}
WHERE tenant = :tenant AND status IN ('queued', 'running', 'cancelling') AND id <> :id;

-- name: lock_tenant
-- Creates of one tenant with a limit take turns here, to count its active jobs. (Each
-- dialect's.)

-- name: set_total
UPDATE {jobs} SET total = :n, pending = :n WHERE id = :id;

-- name: get_job
SELECT id, task, options, status, step, inflight, total, pending, running, succeeded, failed,
       cancelled, latency_total_s, created_at, started_at, finished_at, error, tenant,
       idempotency_key, version, latency_hist, request_hash
FROM {jobs} WHERE id = :id;

-- name: list_jobs
-- Newest first, after the cursor :before (an id; NULL: from the newest), optionally of one
-- tenant, status and task. Each filter is NULL when not asked for.
SELECT id, task, options, status, step, inflight, total, pending, running, succeeded, failed,
       cancelled, latency_total_s, created_at, started_at, finished_at, error, tenant,
       idempotency_key, version, latency_hist, request_hash
FROM {jobs}
WHERE (CAST(:before AS text) IS NULL OR id < :before)
  AND (CAST(:tenant AS text) IS NULL OR tenant = :tenant)
  AND (CAST(:status AS text) IS NULL OR status = :status)
  AND (CAST(:task AS text) IS NULL OR task = :task)
ORDER BY id DESC LIMIT :limit;

-- name: next_job
-- The oldest job with pending items that a worker may claim: (id, whether it has a spend
-- budget). (Each dialect's.)

-- name: this_job
-- As next_job, for the one job :id. (Each dialect's.)

-- name: lock_budgeted
-- Claims of one budgeted job take turns (until their commits). (Each dialect's.)

-- name: try_lock_budgeted
-- lock_budgeted, if it is free now. (Each dialect's.)

-- name: held_by_another
-- Whether a worker other than :worker has items of the job running. (Each dialect's.)

-- name: claim_items
-- Up to :limit pending items of the job become running for :worker. (Each dialect's.)

-- name: count_claim
-- The status guard: a job cancelled while the claim took its items keeps its status (the
-- items then come back as cancelled when the worker sees the cancel).
UPDATE {jobs} SET pending = pending - :n, running = running + :n,
       status = CASE WHEN status = 'queued' THEN 'running' ELSE status END,
       started_at = COALESCE(started_at, :now)
WHERE id = :job;

-- name: hold_lease
INSERT INTO {workers} (id, lease_until) VALUES (:worker, :now + :lease_s)
ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until;

-- name: renew_lease
UPDATE {workers} SET lease_until = :now + :lease_s WHERE id = :worker;

-- name: lock_hist
-- The job's latency histogram, held until the commit. (Each dialect's.)

-- name: count_settled
-- As in count_unrun: a running job that no worker runs any more (the last worker's items
-- settled after it handed the unstarted ones back) is queued again.
UPDATE {jobs} SET running = running - :n, succeeded = succeeded + :succeeded,
       failed = failed + :failed, cancelled = cancelled + :cancelled,
       latency_total_s = latency_total_s + :latency, latency_hist = :hist,
       status = CASE WHEN status = 'running' AND running - :n = 0 AND pending > 0
                     THEN 'queued' ELSE status END
WHERE id = :job;

-- name: settle_counts
-- What the settle rule (conveyor.jobs.settle) decides from: the job's status and counts.
SELECT status, total, pending, running, succeeded, failed, cancelled FROM {jobs} WHERE id = :job;

-- name: first_failure
SELECT idx, error_type, error_message FROM {items}
WHERE job_id = :job AND state = 'failed' ORDER BY idx LIMIT 1;

-- name: settle_job
-- The status, error and step the settle rule gave a job with nothing left to run.
UPDATE {jobs} SET status = :status, error = :error, step = :step, finished_at = :now, inflight = 0
WHERE id = :job AND pending = 0 AND running = 0
  AND status IN ('queued', 'running', 'cancelling');

-- name: status_of
SELECT status FROM {jobs} WHERE id = :job;

-- name: jobs_of_worker
-- The jobs of which :worker has items running. (Each dialect's.)

-- name: count_started
-- An attempt counts when the item starts (reported in batches by the worker), so items that
-- were claimed but never started count none when their worker dies. (Each dialect's: :idx is
-- a list.)

-- name: unrun_all
-- Every running item of the worker in one job goes back: to pending, or to cancelled when
-- the job is being cancelled.
UPDATE {items}
SET state = CASE WHEN :cancel THEN 'cancelled' ELSE 'pending' END, worker = NULL,
    finished_at = CASE WHEN :cancel THEN :now ELSE NULL END
WHERE job_id = :job AND state = 'running' AND worker = :worker;

-- name: unrun_some
-- As unrun_all, for the items :idx (a list). (Each dialect's.)

-- name: count_unrun
-- A running job whose items all went back (its workers stopped or died) is queued again:
-- "running" means a worker has it.
UPDATE {jobs} SET running = running - :n, pending = pending + :pending,
       cancelled = cancelled + :cancelled,
       status = CASE WHEN status = 'running' AND running - :n = 0 AND :pending > 0
                     THEN 'queued' ELSE status END
WHERE id = :job;

-- name: drop_lease
DELETE FROM {workers} WHERE id = :worker;

-- name: take_expired_workers
-- The workers whose lease lapsed, removed; each taken by one caller. (Each dialect's.)

-- name: cancel_pending
UPDATE {items} SET state = 'cancelled', finished_at = :now
WHERE job_id = :job AND state = 'pending';

-- name: count_cancel
UPDATE {jobs} SET pending = pending - :n, cancelled = cancelled + :n, status = 'cancelling'
WHERE id = :job;

-- name: failed_items
-- The job's failed items, which the retry that follows moves. (Each dialect's.)

-- name: retry_items
-- The failed items :idx (a list) back to pending. (Each dialect's.)

-- name: count_retry
UPDATE {jobs} SET failed = failed - :n, pending = pending + :n,
       latency_total_s = latency_total_s - :latency, latency_hist = :hist,
       -- A job that ended (completed, or failed by its items) reopens: queued, without
       -- the error and the final step of its end.
       status = CASE WHEN status IN ('completed', 'failed') THEN 'queued' ELSE status END,
       error = CASE WHEN status IN ('completed', 'failed') THEN NULL ELSE error END,
       step = CASE WHEN status IN ('completed', 'failed') THEN NULL ELSE step END,
       -- A completed job's start moves forward by its idle time (finished -> now, none if
       -- the clock is behind), so the summary's duration counts the time it ran, not the
       -- time it waited for the retry.
       started_at = CASE WHEN finished_at IS NULL OR :now < finished_at THEN started_at
                         ELSE started_at + (:now - finished_at) END,
       finished_at = NULL
WHERE id = :job;

-- name: fail_items
UPDATE {items} SET state = 'cancelled', worker = NULL, finished_at = :now
WHERE job_id = :job AND state IN ('pending', 'running');

-- name: fail_job
UPDATE {jobs} SET status = 'failed', error = :error, step = :step, finished_at = :now,
       cancelled = cancelled + pending + running, pending = 0, running = 0, inflight = 0
WHERE id = :job;

-- name: set_options
-- A new spend budget (the options are the job's, with max_cost_usd changed).
UPDATE {jobs} SET options = :options WHERE id = :job;

-- name: set_progress
-- A NULL step keeps the job's step; an empty one clears it (a wait that is over).
UPDATE {jobs} SET inflight = :inflight,
    step = CASE WHEN CAST(:step AS text) IS NULL THEN step ELSE NULLIF(CAST(:step AS text), '') END
WHERE id = :job AND status NOT IN ('completed', 'failed', 'cancelled');

-- name: items_page
SELECT idx, input, state, attempts, result, error_type, error_message, latency_s, started_at,
       finished_at
FROM {items} WHERE job_id = :job AND idx > :after ORDER BY idx LIMIT :limit;

-- name: items_page_by_state
SELECT idx, input, state, attempts, result, error_type, error_message, latency_s, started_at,
       finished_at
FROM {items} WHERE job_id = :job AND state = :state AND idx > :after ORDER BY idx LIMIT :limit;

-- Files and batch records (conveyor.jobs.stores.file_rules) ---------------------------------

-- name: insert_upload
INSERT INTO {files} (id, tenant, filename, purpose, created_at, touched_at)
VALUES (:id, :tenant, :filename, :purpose, :created, :now);

-- name: touch_upload
-- Counts the chunk about to be written, if the upload is still there (not swept, not
-- discarded): no other writer touches its row until the commit (PostgreSQL: the row stays
-- locked, so a sweep waits for it, then sees it was touched).
UPDATE {files} SET chunks = chunks + 1, touched_at = :now
WHERE id = :id AND state = 'uploading' AND chunks = :seq;

-- name: insert_chunk
INSERT INTO {file_chunks} (file_id, seq, data) VALUES (:id, :seq, :data);

-- name: publish_file
UPDATE {files} SET state = 'ready', bytes = :bytes, items = :items
WHERE id = :id AND state = 'uploading' AND chunks = :chunks;

-- name: discard_upload
-- An upload that failed, or whose answer was lost (made visible, then cancelled before its
-- client heard of it): removed whatever its state, since nobody has its id.
DELETE FROM {files} WHERE id = :id;

-- name: delete_chunks
DELETE FROM {file_chunks} WHERE file_id = :id;

-- name: insert_ready_file
-- A whole file at once (`conveyor db upgrade` importing a files folder); its chunks follow.
INSERT INTO {files} (id, tenant, state, filename, purpose, bytes, items, chunks, created_at,
                     touched_at)
VALUES (:id, :tenant, 'ready', :filename, :purpose, :bytes, :items, :chunks, :created,
        :created);

-- name: file_exists
SELECT 1 FROM {files} WHERE id = :id;

-- name: get_file
SELECT id, tenant, filename, purpose, bytes, items, chunks, created_at FROM {files}
WHERE id = :id AND tenant = :tenant AND state = 'ready';

-- name: list_files
-- Newest first; :purpose NULL: every purpose.
SELECT id, tenant, filename, purpose, bytes, items, chunks, created_at FROM {files}
WHERE tenant = :tenant AND state = 'ready'
  AND (CAST(:purpose AS text) IS NULL OR purpose = :purpose)
ORDER BY created_at DESC, id DESC;

-- name: delete_file
DELETE FROM {files} WHERE id = :id AND tenant = :tenant AND state = 'ready';

-- name: file_chunk
SELECT data FROM {file_chunks} WHERE file_id = :id AND seq = :seq;

-- name: idle_uploads
-- Uploads whose last chunk is older than :idle_s (their process died, or their client
-- stalled): removed with their chunks. An upload writing a chunk holds its row (see
-- touch_upload): the delete waits for it, then finds it touched, and leaves it.
DELETE FROM {files} WHERE state = 'uploading' AND touched_at < :now - CAST(:idle_s AS float8)
RETURNING id;

-- name: insert_batch
INSERT INTO {batches} (id, tenant, kind, job_id, created_at, expires_at, ended, record)
VALUES (:id, :tenant, :kind, :job, :created, :expires, :ended, :record);

-- name: batch_exists
SELECT 1 FROM {batches} WHERE id = :id;

-- name: get_batch
SELECT id, tenant, kind, job_id, created_at, expires_at, ended, record FROM {batches}
WHERE id = :id AND tenant = :tenant AND kind = :kind;

-- name: lock_batch
-- get_batch, held until the commit: every change of a batch (expiry, cancel, the claim to
-- finalize it, its final state) reads it so, and changes from any instance take turns.
-- (Each dialect's.)

-- name: list_batches
SELECT id, tenant, kind, job_id, created_at, expires_at, ended, record FROM {batches}
WHERE tenant = :tenant AND kind = :kind
ORDER BY created_at DESC, id DESC;

-- name: update_batch
UPDATE {batches} SET job_id = :job, ended = :ended, record = :record WHERE id = :id;

-- name: delete_batch
DELETE FROM {batches} WHERE id = :id;

-- name: due_batches
-- Batches of one kind whose outcome is not final and whose time is up (at :due). (Each
-- dialect's: "not ended" is written as its partial index says it, for the index to serve.)

-- name: next_due
-- The earliest time after :due at which a batch of one kind not ended is due. (Each
-- dialect's, as due_batches.)

-- name: tenants_of_jobs
SELECT DISTINCT tenant FROM {jobs};

-- name: add_rate
INSERT INTO {job_rates} (job_id, second, settled) VALUES (:job, :second, :n)
ON CONFLICT (job_id, second) DO UPDATE SET settled = {job_rates}.settled + excluded.settled;

-- name: rate_series
SELECT second, settled FROM {job_rates} WHERE job_id = :job ORDER BY second;

-- name: worker_leases
-- Each worker holding a lease, with each job it runs items of now and how many (a worker with
-- none: one row, job NULL). (Each dialect's: SQLite names the index to read.)

-- name: jobs_overview
SELECT status, COUNT(*), COALESCE(SUM(pending), 0), COALESCE(SUM(running), 0),
       MIN(CASE WHEN status = 'queued' THEN created_at END)
FROM {jobs} GROUP BY status;
