-- Conversations and their messages.
--
-- Every message gets a per-conversation sequence number taken from
-- `conversations.last_seq` under the conversation's row lock, so within one
-- conversation sequence order is commit order: an SSE client that has seen
-- seq N can ask for "seq > N" and never miss a message committed later.

CREATE TABLE conversations (
    id             uuid PRIMARY KEY,
    -- "user:<platform sub>" or "visitor:<uuid>": who may read and write it.
    owner          text        NOT NULL,
    owner_kind     text        NOT NULL CHECK (owner_kind IN ('user', 'visitor')),
    owner_name     text,
    owner_email    text,
    owner_role     text        NOT NULL,
    status         text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    mode           text        NOT NULL DEFAULT 'ai' CHECK (mode IN ('ai', 'human')),
    page_url       text,
    page_title     text,
    locale         text        NOT NULL DEFAULT 'ru',
    clarify_count  integer     NOT NULL DEFAULT 0,
    rating         smallint    CHECK (rating BETWEEN 1 AND 5),
    rating_comment text,
    rated_at       timestamptz,
    escalated_at   timestamptz,
    escalation_reason text,
    closed_at      timestamptz,
    last_seq       bigint      NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX conversations_owner_created_idx ON conversations (owner, created_at DESC, id DESC);
CREATE INDEX conversations_mode_status_idx ON conversations (mode, status, updated_at DESC);

CREATE TABLE messages (
    id                uuid PRIMARY KEY,
    conversation_id   uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq               bigint      NOT NULL,
    role              text        NOT NULL CHECK (role IN ('user', 'assistant', 'operator', 'system')),
    content           text        NOT NULL,
    -- Sources, the decision taken, status changes, the operator's name...
    metadata          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Set by the client so that a resend after a network error stores nothing new.
    client_message_id text,
    -- The user message this automatic reply answers. Unique: one reply per user message,
    -- however many times the job that writes it runs.
    reply_to          uuid        REFERENCES messages (id) ON DELETE CASCADE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq),
    CONSTRAINT messages_client_message_id_key UNIQUE (conversation_id, client_message_id)
);

CREATE UNIQUE INDEX messages_one_reply_idx ON messages (reply_to) WHERE reply_to IS NOT NULL;

-- Announce each committed message to every API process (LISTEN concierge_events).
-- The payload carries ids only; listeners read the row itself.
CREATE FUNCTION concierge_notify_message() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'concierge_events',
        json_build_object('kind', 'message', 'conversation_id', NEW.conversation_id, 'seq', NEW.seq)::text
    );
    RETURN NULL;
END;
$$;

CREATE TRIGGER messages_notify AFTER INSERT ON messages
FOR EACH ROW EXECUTE FUNCTION concierge_notify_message();
