-- Schema version 1: jobs, their items, and the workers' leases.

-- One row per job. The counts are kept here, in the same transactions that move items between
-- states, so that reading a job's progress is one primary-key lookup, whatever its size.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,              -- UUIDv7: sorts by creation time
    task TEXT NOT NULL,
    options TEXT NOT NULL,            -- JobOptions as JSON
    status TEXT NOT NULL,
    step TEXT,                        -- the latest step message a task reported
    inflight REAL NOT NULL DEFAULT 0, -- reported progress of in-flight items, in items
    total INTEGER NOT NULL DEFAULT 0,
    pending INTEGER NOT NULL DEFAULT 0,
    running INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0,
    latency_total_s REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    error TEXT
);

CREATE INDEX jobs_by_status ON jobs (status, id);

-- One row per item, keyed by (job, index): WITHOUT ROWID keeps each item in one b-tree entry.
CREATE TABLE items (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    input TEXT NOT NULL,              -- JSON
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,                      -- the worker holding it while running
    result TEXT,                      -- JSON, when succeeded
    error_type TEXT,
    error_message TEXT,
    latency_s REAL,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;

-- Claims take the lowest pending indexes of a job; results are read by state.
CREATE INDEX items_by_state ON items (job_id, state, idx);

-- One lease per worker, covering every item it holds: renewing is one row.
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    lease_until REAL NOT NULL
) WITHOUT ROWID;
