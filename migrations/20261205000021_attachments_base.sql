-- The attachments of messages, as the attachments foundation defines them (its own migration,
-- earlier in order, creates the same table; then this one changes nothing). Files live in
-- storage under `storage_key`; a row without `message_id` is uploaded and not sent yet.
CREATE TABLE IF NOT EXISTS attachments (
    id              uuid        PRIMARY KEY,
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    message_id      uuid        REFERENCES messages (id) ON DELETE CASCADE,
    author          text        NOT NULL CHECK (author IN ('user', 'operator')),
    kind            text        NOT NULL CHECK (kind IN ('image', 'pdf', 'text', 'voice')),
    content_type    text        NOT NULL,
    file_name       text        NOT NULL,
    size_bytes      bigint      NOT NULL,
    sha256          text        NOT NULL,
    storage_key     text        NOT NULL UNIQUE,
    transcript      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS attachments_message_idx ON attachments (message_id);
CREATE INDEX IF NOT EXISTS attachments_conversation_idx ON attachments (conversation_id);
