-- Each committed message is announced with the message itself when it fits in a notification,
-- so that the API's streams can send it without reading it back. The announcement is made at
-- commit (a deferred constraint trigger), from the row as committed: a message's files are
-- attached after its insert, in the same transaction. A message too long for a notification
-- (8000 bytes) is announced by its number alone, and the streams read it.
DROP TRIGGER messages_notify ON messages;
DROP FUNCTION concierge_notify_message();

CREATE FUNCTION concierge_notify_message() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    payload jsonb := json_build_object('kind', 'message', 'conversation_id', NEW.conversation_id, 'seq', NEW.seq);
    message jsonb;
BEGIN
    SELECT to_jsonb(m) INTO message
    FROM (SELECT id, conversation_id, seq, role, content, metadata, client_message_id, reply_to, action_run_id, created_at, files
          FROM messages WHERE id = NEW.id) AS m;
    IF message IS NOT NULL AND octet_length((payload || jsonb_build_object('message', message))::text) < 7900 THEN
        payload := payload || jsonb_build_object('message', message);
    END IF;
    PERFORM pg_notify('concierge_events', payload::text);
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER messages_notify AFTER INSERT ON messages
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION concierge_notify_message();
