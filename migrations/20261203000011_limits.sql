-- Quotas that must hold across API and worker processes and restarts, counted from rows.

-- Hand-overs to a person asked for with the button, by the conversation's owner: at most
-- CONCIERGE_LIMIT_ESCALATIONS_PER_DAY in any 24 hours.
CREATE TABLE escalation_requests (
    id              bigserial   PRIMARY KEY,
    -- "user:<sub>" or "visitor:<uuid>", as conversations.owner.
    owner           text        NOT NULL,
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX escalation_requests_owner_idx ON escalation_requests (owner, created_at);

-- Forum topics the workers asked Telegram to create, by group: at most
-- CONCIERGE_TELEGRAM_TOPICS_PER_HOUR in any hour; past it a topic's creation waits.
CREATE TABLE telegram_topic_creations (
    id         bigserial   PRIMARY KEY,
    chat_id    bigint      NOT NULL,
    conversation_id uuid   REFERENCES conversations (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telegram_topic_creations_chat_idx ON telegram_topic_creations (chat_id, created_at);

-- The per-principal daily token budget sums today's calls of the owner's conversations.
CREATE INDEX llm_calls_conversation_created_idx ON llm_calls (conversation_id, created_at);
