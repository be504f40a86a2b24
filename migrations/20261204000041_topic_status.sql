-- The support group at a glance: each topic's name shows where its conversation stands, the
-- conversation can be taken by one operator, and a user waiting too long for a person is
-- reminded of in the topic.

-- What Telegram shows of the topic, as the last status change left it: the full name (the
-- status prefix and `name`) and whether the topic is closed. NULL: not known (a topic made
-- before this column, or one being re-created).
ALTER TABLE telegram_topics ADD COLUMN shown_name text;
ALTER TABLE telegram_topics ADD COLUMN shown_closed boolean NOT NULL DEFAULT false;

-- The operator who took the conversation with /take or the card's button: their Telegram id
-- and the name the topic calls them by. NULL: nobody has it.
ALTER TABLE telegram_topics ADD COLUMN assignee_id bigint;
ALTER TABLE telegram_topics ADD COLUMN assignee_name text;
ALTER TABLE telegram_topics ADD COLUMN assigned_at timestamptz;

-- A status change of the topic is an outbox row too, sent in order with the posts. It carries
-- no text: the sender shows the conversation's status as it is when the row is sent, so a run
-- of changes costs one request, and a newer row replaces the older ones still pending.
ALTER TABLE telegram_outbox DROP CONSTRAINT telegram_outbox_kind_check;
ALTER TABLE telegram_outbox ADD CONSTRAINT telegram_outbox_kind_check
    CHECK (kind IN ('card', 'message', 'notice', 'delete_topic', 'topic_status'));
CREATE INDEX telegram_outbox_status_idx ON telegram_outbox (conversation_id)
    WHERE kind = 'topic_status' AND state = 'pending';

-- Each hand-over to a person, from the moment it happened until the first operator reply
-- (`answered_at`) or until the conversation left people without one (`ended_at`: handed back
-- to the bot, or closed). The SLA job reminds the topic of a wait that runs too long
-- (`reminders`, at most two) and records the breach; the console shows the open wait. Deleted
-- with its conversation (retention and erasure), after the metrics of its days are frozen.
CREATE TABLE human_waits (
    id              bigserial   PRIMARY KEY,
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    since           timestamptz NOT NULL DEFAULT now(),
    answered_at     timestamptz,
    ended_at        timestamptz,
    reminders       smallint    NOT NULL DEFAULT 0,
    -- When the first reminder was due: the user had waited longer than CONCIERGE_SLA_MINUTES.
    breached_at     timestamptz
);

-- One open wait per conversation.
CREATE UNIQUE INDEX human_waits_open_idx ON human_waits (conversation_id)
    WHERE answered_at IS NULL AND ended_at IS NULL;
CREATE INDEX human_waits_since_idx ON human_waits (since) WHERE answered_at IS NULL AND ended_at IS NULL;
CREATE INDEX human_waits_breached_idx ON human_waits (breached_at) WHERE breached_at IS NOT NULL;
