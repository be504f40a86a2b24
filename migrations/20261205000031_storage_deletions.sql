-- Files whose attachment rows are gone. Deleting a row (erasure, retention, a conversation's
-- deletion, the cleanup of unsent uploads, a cascade) queues its storage key here in the same
-- transaction; the files are deleted after the commit, and a failed delete stays queued, to be
-- tried again at `next_attempt_at`.
CREATE TABLE storage_deletions (
    storage_key     text        PRIMARY KEY,
    queued_at       timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);

CREATE INDEX storage_deletions_due_idx ON storage_deletions (next_attempt_at);

CREATE FUNCTION queue_storage_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO storage_deletions (storage_key) VALUES (OLD.storage_key)
    ON CONFLICT (storage_key) DO UPDATE SET next_attempt_at = now();
    RETURN OLD;
END
$$;

CREATE TRIGGER attachments_queue_storage_deletion AFTER DELETE ON attachments
    FOR EACH ROW EXECUTE FUNCTION queue_storage_deletion();

-- Unsent uploads are found by age.
CREATE INDEX attachments_unsent_idx ON attachments (created_at) WHERE message_id IS NULL;
