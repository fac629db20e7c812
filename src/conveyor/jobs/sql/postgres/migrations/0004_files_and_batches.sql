-- Schema version 4: uploaded files and the records of batches, beside the jobs, so that every
-- service instance on one store serves them (before, each kept them in its own folder). The
-- same tables as the SQLite store's version 5.

-- One row per file. An upload writes its chunks one transaction each while its row says
-- 'uploading', and becomes 'ready' (visible) in one last transaction: nothing reads a half
-- file. touched_at is the time of its last chunk: an upload idle for long was abandoned (its
-- process died) and is removed by the sweep, chunks and all.
CREATE TABLE conveyor_files (
    id text PRIMARY KEY,                    -- file-<32 hex digits>
    tenant text NOT NULL,
    state text NOT NULL DEFAULT 'uploading', -- 'uploading', then 'ready'
    filename text NOT NULL DEFAULT '',
    purpose text NOT NULL DEFAULT '',       -- '' for a job input; OpenAI's purpose otherwise
    bytes bigint NOT NULL DEFAULT 0,
    items bigint NOT NULL DEFAULT 0,        -- its non-blank lines
    chunks integer NOT NULL DEFAULT 0,      -- written so far: seq 0 .. chunks - 1
    created_at double precision NOT NULL,
    touched_at double precision NOT NULL
);

CREATE INDEX conveyor_files_by_tenant ON conveyor_files (tenant, created_at);
CREATE INDEX conveyor_files_uploading ON conveyor_files (touched_at) WHERE state = 'uploading';

-- A file's bytes, in order, a chunk a row (1 MiB but the last: see FileManager). Stored out
-- of line (TOAST) without compression: with PostgreSQL's default (pglz) bench/file_chunks.py
-- wrote 200 MiB at 19 MiB/s against 85, and its JSONL took as much room either way; see
-- docs/decisions.md.
CREATE TABLE conveyor_file_chunks (
    file_id text NOT NULL,
    seq integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (file_id, seq)
);
ALTER TABLE conveyor_file_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- One row per batch (OpenAI's and Anthropic's): what the batch APIs show beyond its job, as
-- JSON, and the columns the store itself reads (the tenant's list, the sweep of due ones).
CREATE TABLE conveyor_batches (
    id text PRIMARY KEY,                    -- batch_... (OpenAI) or msgbatch_... (Anthropic)
    tenant text NOT NULL,
    kind text NOT NULL,                     -- 'openai' or 'anthropic'
    job_id text,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    ended boolean NOT NULL DEFAULT false,   -- true once its outcome is final: the sweep passes it by
    record text NOT NULL
);

CREATE INDEX conveyor_batches_by_tenant ON conveyor_batches (tenant, kind, created_at);
CREATE INDEX conveyor_batches_unended ON conveyor_batches (kind, expires_at) WHERE NOT ended;
