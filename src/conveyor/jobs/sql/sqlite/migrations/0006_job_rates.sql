-- Schema version 6: each job's items settled per second, for its rate chart.

-- One row per job and second (Unix, by the clock of the worker that settled the items): the
-- items that ended in that second, succeeded or failed. The worker's record of a batch adds
-- to it in the same transaction as the items (`add_rate`), so a result is counted once.
CREATE TABLE job_rates (
    job_id TEXT NOT NULL,
    second INTEGER NOT NULL,
    settled INTEGER NOT NULL,
    PRIMARY KEY (job_id, second)
) WITHOUT ROWID;
