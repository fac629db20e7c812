-- Schema version 3: an Idempotency-Key remembers the request it was first used with.

-- A hash of the request that created the job (the service: SHA-256 of the body). The same
-- key with another request is refused instead of silently answering with the first job.
ALTER TABLE jobs ADD COLUMN request_hash TEXT;
