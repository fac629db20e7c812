-- Schema version 2: idle workers are also woken when an active job with pending items stops
-- being held by any worker (its running count falls to 0): the last worker on it stopped,
-- handed its items back, or reached the job's budget. A job with a spend budget runs on one
-- worker at a time, so this is when another may take it over; without the notification it
-- would wait for the next poll.
CREATE OR REPLACE FUNCTION conveyor_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.version := OLD.version + 1;
    END IF;
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.conveyor_jobs', NEW.id);
    IF NEW.pending > 0 AND NEW.status IN ('queued', 'running')
       AND (TG_OP = 'INSERT' OR OLD.pending = 0 OR OLD.status NOT IN ('queued', 'running')
            OR (OLD.running > 0 AND NEW.running = 0)) THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '.conveyor_work', NEW.id);
    END IF;
    RETURN NEW;
END;
$$;
