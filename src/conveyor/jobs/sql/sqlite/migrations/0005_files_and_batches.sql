-- Schema version 5: uploaded files and the records of batches, beside the jobs, so that every
-- service instance on one store serves them (before, each kept them in its own folder).

-- One row per file. An upload writes its chunks one transaction each while its row says
-- 'uploading', and becomes 'ready' (visible) in one last transaction: nothing reads a half
-- file. touched_at is the time of its last chunk: an upload idle for long was abandoned (its
-- process died) and is removed by the sweep, chunks and all.
CREATE TABLE files (
    id TEXT PRIMARY KEY,                    -- file-<32 hex digits>
    tenant TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'uploading', -- 'uploading', then 'ready'
    filename TEXT NOT NULL DEFAULT '',
    purpose TEXT NOT NULL DEFAULT '',       -- '' for a job input; OpenAI's purpose otherwise
    bytes INTEGER NOT NULL DEFAULT 0,
    items INTEGER NOT NULL DEFAULT 0,       -- its non-blank lines
    chunks INTEGER NOT NULL DEFAULT 0,      -- written so far: seq 0 .. chunks - 1
    created_at REAL NOT NULL,
    touched_at REAL NOT NULL
);

CREATE INDEX files_by_tenant ON files (tenant, created_at);
CREATE INDEX files_uploading ON files (touched_at) WHERE state = 'uploading';

-- A file's bytes, in order, a chunk a row (1 MiB but the last: see FileManager). A rowid
-- table: its rows are large, which WITHOUT ROWID tables are not made for.
CREATE TABLE file_chunks (
    file_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (file_id, seq)
);

-- One row per batch (OpenAI's and Anthropic's): what the batch APIs show beyond its job, as
-- JSON, and the columns the store itself reads (the tenant's list, the sweep of due ones).
CREATE TABLE batches (
    id TEXT PRIMARY KEY,                    -- batch_... (OpenAI) or msgbatch_... (Anthropic)
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,                     -- 'openai' or 'anthropic'
    job_id TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    ended INTEGER NOT NULL DEFAULT 0,       -- 1 once its outcome is final: the sweep passes it by
    record TEXT NOT NULL
);

CREATE INDEX batches_by_tenant ON batches (tenant, kind, created_at);
CREATE INDEX batches_unended ON batches (kind, expires_at) WHERE ended = 0;
