-- Personal data: retention, erasure of one person, their export, and the audit of both.
--
-- What happens to each table when a conversation passes the retention limit
-- (`CONCIERGE_RETENTION_DAYS`, closed conversations only) or its owner is erased
-- (`DELETE /admin/users/{sub}/`):
--
-- conversations          deleted (owner, name, email, page, rating comment are personal).
-- messages               deleted (cascade from conversations).
-- llm_calls              deleted explicitly: its foreign keys only SET NULL, and a call's
--                        `error` can quote what the model was sent.
-- action_definitions     kept: configuration, nobody's data.
-- action_runs            deleted (cascade): params and results are the user's.
-- telegram_topics        deleted (cascade); the forum topic itself is deleted in Telegram
--                        through the outbox (`delete_topic` rows below).
-- telegram_outbox        the conversation's posts are deleted (cascade); `delete_topic` rows
--                        carry no text and are removed by retention once handled.
-- telegram_rate          kept: send slots per chat, nobody's data.
-- telegram_updates       the updates of the person's topics are deleted (matched by chat and
--                        thread in the payload); retention also deletes every handled update
--                        older than the limit (operators' messages, stored for deduplication).
-- telegram_messages      deleted (cascade from messages).
-- operator_notes         deleted (cascade).
-- conversation_metrics   kept. Metrics are computed from the rows, so before retention deletes
--                        a conversation every day its rows touch is computed with them and
--                        frozen (`frozen_at`): later recomputations leave a frozen day alone.
--                        Erasure does not freeze (a person's right to erasure outweighs exact
--                        old figures; a frozen day keeps its counts, which name nobody).
-- knowledge_*            kept: documents, nobody's data.
-- reindex_runs           kept: names only the administrator who asked.
-- worker_instances       kept: process bookkeeping.
-- eval_runs/comparisons  kept: labelled fixtures, nobody's data.
-- apalis.jobs            kept: payloads hold ids only; a job of an erased conversation finds
--                        nothing and ends; finished jobs are pruned after a week.
-- admin_audit            kept: the legal record of erasures and exports; the subject is a
--                        salted hash, so the record itself names nobody.
-- revoked_visitors       kept until the revoked tokens would have expired anyway.

-- A metrics day whose conversations retention has deleted: its figures are final.
ALTER TABLE conversation_metrics ADD COLUMN frozen_at timestamptz;

-- Retention looks for closed conversations by last activity.
CREATE INDEX conversations_closed_activity_idx ON conversations (updated_at) WHERE status = 'closed';

-- Deleting a forum topic in Telegram is an outbox row too, so that it survives failures and
-- restarts. Its conversation is gone by then, so it names the topic itself.
ALTER TABLE telegram_outbox ALTER COLUMN conversation_id DROP NOT NULL;
ALTER TABLE telegram_outbox ADD COLUMN chat_id bigint;
ALTER TABLE telegram_outbox ADD COLUMN thread_id integer;
ALTER TABLE telegram_outbox DROP CONSTRAINT telegram_outbox_kind_check;
ALTER TABLE telegram_outbox ADD CONSTRAINT telegram_outbox_kind_check
    CHECK (kind IN ('card', 'message', 'notice', 'delete_topic'));
ALTER TABLE telegram_outbox ADD CONSTRAINT telegram_outbox_target_check CHECK (
    CASE WHEN kind = 'delete_topic'
         THEN conversation_id IS NULL AND chat_id IS NOT NULL AND thread_id IS NOT NULL
         ELSE conversation_id IS NOT NULL END
);
CREATE INDEX telegram_outbox_deletions_idx ON telegram_outbox (id) WHERE kind = 'delete_topic' AND state = 'pending';

-- Visitors whose data was erased: their tokens are refused until they would have expired.
CREATE TABLE revoked_visitors (
    visitor_id uuid PRIMARY KEY,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    -- When the last token issued to the visitor expires; the row can go after that.
    expires_at timestamptz NOT NULL
);

-- Erasures and exports, with the administrator who asked.
CREATE TABLE admin_audit (
    id            bigserial   PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    -- The administrator's owner key (`user:<sub>`) and name, as their token gave them.
    admin_owner   text        NOT NULL,
    admin_name    text,
    action        text        NOT NULL CHECK (action IN ('erase', 'export')),
    -- HMAC-SHA256 of the subject's owner key under a key derived from the platform secret:
    -- whoever knows a sub can find its entries, the table alone names nobody.
    subject_hash  text        NOT NULL,
    -- What was erased or exported: rows per table, topics queued for deletion.
    counts        jsonb       NOT NULL
);
CREATE INDEX admin_audit_at_idx ON admin_audit (at DESC);
CREATE INDEX admin_audit_subject_idx ON admin_audit (subject_hash);
