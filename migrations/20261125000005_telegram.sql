-- The human path in Telegram: one forum topic per escalated conversation, the outbox of posts
-- to topics (sent in order, paced per group), each update received from Telegram stored once,
-- operators' messages mirrored into the web chat (for edits), and operators' internal notes.

CREATE TABLE telegram_topics (
    conversation_id uuid PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    chat_id         bigint      NOT NULL,
    -- NULL until Telegram has created the topic. The row itself is the claim that keeps a
    -- second job from creating another topic while the first waits for Telegram.
    thread_id       integer,
    name            text        NOT NULL,
    -- Until when the job creating the topic holds the claim.
    claimed_until   timestamptz,
    -- Set when the first card is queued: posts reach the topic only after the card.
    card_queued_at  timestamptz,
    -- The last message a card's transcript showed; later messages are forwarded one by one.
    covered_seq     bigint      NOT NULL DEFAULT 0,
    -- The job sending this topic's outbox, and until when (renewed per post).
    sender          uuid,
    sending_until   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX telegram_topics_thread_idx ON telegram_topics (chat_id, thread_id) WHERE thread_id IS NOT NULL;

-- Posts to a conversation's topic, sent one at a time in id order.
CREATE TABLE telegram_outbox (
    id                  bigserial   PRIMARY KEY,
    conversation_id     uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- What caused the post ("message:<id>", "card:<escalation>:<part>", "update:<id>"...):
    -- the same cause never posts twice.
    key                 text        NOT NULL UNIQUE,
    kind                text        NOT NULL CHECK (kind IN ('card', 'message', 'notice')),
    -- The user message this forwards.
    message_id          uuid        REFERENCES messages (id) ON DELETE CASCADE,
    text                text        NOT NULL,
    -- Inline keyboard, as the Bot API takes it.
    reply_markup        jsonb,
    state               text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'skipped', 'failed')),
    attempts            integer     NOT NULL DEFAULT 0,
    last_error          text,
    telegram_message_id bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz
);

CREATE INDEX telegram_outbox_pending_idx ON telegram_outbox (conversation_id, id) WHERE state = 'pending';

-- The next free send slot of each chat, shared by every worker process.
CREATE TABLE telegram_rate (
    chat_id bigint      PRIMARY KEY,
    next_at timestamptz NOT NULL
);

-- Updates from the webhook or from polling, each stored once.
CREATE TABLE telegram_updates (
    update_id    bigint      PRIMARY KEY,
    payload      jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    -- What handling it did: "reply", "close", "ignored: not an operator"...
    outcome      text
);

-- Operators' Telegram messages shown in the web chat, so that edits reach the web message.
CREATE TABLE telegram_messages (
    chat_id             bigint NOT NULL,
    telegram_message_id bigint NOT NULL,
    message_id          uuid   NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (chat_id, telegram_message_id)
);

-- Internal notes: operators only, never shown to the user.
CREATE TABLE operator_notes (
    id              uuid        PRIMARY KEY,
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    author          text        NOT NULL,
    content         text        NOT NULL,
    source          text        NOT NULL CHECK (source IN ('telegram', 'console')),
    -- The update or request that wrote it, so that a re-run writes nothing new.
    key             text        UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX operator_notes_conversation_idx ON operator_notes (conversation_id, created_at);
