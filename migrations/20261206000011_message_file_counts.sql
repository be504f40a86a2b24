-- How many files each message carries, kept by the database as attachments are attached,
-- moved or deleted, so that reading a message says whether its files need reading: most
-- messages have none, and the stream, the API and the worker then skip that query.
ALTER TABLE messages ADD COLUMN files smallint NOT NULL DEFAULT 0;

UPDATE messages m SET files = counted.n
FROM (SELECT message_id, count(*) AS n FROM attachments WHERE message_id IS NOT NULL GROUP BY message_id) AS counted
WHERE m.id = counted.message_id;

CREATE FUNCTION count_message_files() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.message_id IS NOT NULL THEN
        UPDATE messages SET files = files - 1 WHERE id = OLD.message_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.message_id IS NOT NULL THEN
        UPDATE messages SET files = files + 1 WHERE id = NEW.message_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER attachments_count_message_files
    AFTER INSERT OR DELETE OR UPDATE OF message_id ON attachments
    FOR EACH ROW EXECUTE FUNCTION count_message_files();
