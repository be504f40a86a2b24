-- Every call to a language model: what it cost, how long it took, how it ended, and the
-- user message it was made for. Token budgets are enforced from these rows.
CREATE TABLE llm_calls (
    id                uuid PRIMARY KEY,
    message_id        uuid        REFERENCES messages (id) ON DELETE SET NULL,
    conversation_id   uuid        REFERENCES conversations (id) ON DELETE SET NULL,
    provider          text        NOT NULL,
    model             text        NOT NULL,
    -- decide, repair, follow_up (after an action)...
    purpose           text        NOT NULL,
    prompt_version    text        NOT NULL,
    prompt_tokens     integer     NOT NULL DEFAULT 0,
    completion_tokens integer     NOT NULL DEFAULT 0,
    latency_ms        integer     NOT NULL,
    -- ok, invalid (unusable reply), http_error, rate_limited, timeout, transport, too_large, circuit_open
    outcome           text        NOT NULL,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX llm_calls_conversation_idx ON llm_calls (conversation_id);
CREATE INDEX llm_calls_created_idx ON llm_calls (created_at);
CREATE INDEX llm_calls_message_idx ON llm_calls (message_id);
