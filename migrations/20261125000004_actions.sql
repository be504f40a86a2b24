-- Read-only diagnostic actions: their definitions (loaded from fixtures, switchable by admins)
-- and a log of every run.

CREATE TABLE action_definitions (
    name             text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{1,62}$'),
    display_name     text        NOT NULL,
    -- What the action does, for the model and for the widget.
    description      text        NOT NULL,
    -- JSON Schema (a documented subset) of the parameters.
    parameters       jsonb       NOT NULL,
    trigger_keywords text[]      NOT NULL DEFAULT '{}',
    -- builtin:<name>, or http for a declarative action described by `http`.
    handler          text        NOT NULL,
    http             jsonb,
    -- Whether the action needs a signed-in platform user (visitors cannot run it).
    requires_user    boolean     NOT NULL DEFAULT true,
    read_only        boolean     NOT NULL DEFAULT true CHECK (read_only),
    active           boolean     NOT NULL DEFAULT true,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE action_runs (
    id              uuid PRIMARY KEY,
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- The user message the run answers, when the engine chose it.
    message_id      uuid        REFERENCES messages (id) ON DELETE SET NULL,
    action          text        NOT NULL,
    params          jsonb       NOT NULL,
    -- user (the widget's button), llm or offline.
    requested_by    text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    duration_ms     integer,
    result_summary  text,
    result          jsonb,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
-- One engine-chosen run per user message, however often the job that chose it runs.
CREATE UNIQUE INDEX action_runs_one_per_message_idx ON action_runs (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX action_runs_created_idx ON action_runs (created_at DESC);
CREATE INDEX action_runs_conversation_idx ON action_runs (conversation_id);

-- The message reporting a run; unique, so a retried job posts its result once.
ALTER TABLE messages ADD COLUMN action_run_id uuid REFERENCES action_runs (id) ON DELETE SET NULL;
CREATE UNIQUE INDEX messages_one_result_idx ON messages (action_run_id) WHERE action_run_id IS NOT NULL;
