-- Answers that grow the knowledge base: drafts of knowledge documents made from a user's
-- question and an operator's answer, reviewed in the console, and the documents approved
-- into the database when the knowledge directory cannot be written.

CREATE TABLE knowledge_drafts (
    id                uuid        PRIMARY KEY,
    -- The conversation and the operator's answer the draft was made from. A draft still under
    -- review quotes the user, so it goes with the conversation (retention, erasure); what an
    -- administrator approved lives on as a document.
    conversation_id   uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- One draft per answer: asking again (a second `/kb`, a second press) finds the first.
    answer_id         uuid        NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    -- What it was made from, as it was when asked.
    question          text        NOT NULL,
    answer            text        NOT NULL,
    -- writing: the job is making it; ready: waiting for review; publishing: approved, the job
    -- is writing the document; approved; discarded.
    status            text        NOT NULL DEFAULT 'writing'
                      CHECK (status IN ('writing', 'ready', 'publishing', 'approved', 'discarded')),
    title             text,
    body              text,
    -- `model` (the language model wrote it) or `template`; and why not the model, when it was
    -- configured.
    written_by        text        CHECK (written_by IN ('model', 'template')),
    model_fallback    text,
    -- Who asked: the operator's name and the channel (`telegram`).
    requested_by      text        NOT NULL,
    requested_via     text        NOT NULL CHECK (requested_via IN ('telegram', 'console')),
    -- The administrator who approved or discarded it (owner key).
    decided_by        text,
    decided_at        timestamptz,
    -- Where the approved document went: its path, and `file` or `database`.
    path              text,
    stored_in         text        CHECK (stored_in IN ('file', 'database')),
    -- The reindex the approval queued.
    reindex_run_id    uuid        REFERENCES reindex_runs (id) ON DELETE SET NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX knowledge_drafts_created_idx ON knowledge_drafts (created_at DESC);

-- Knowledge documents kept in the database (approved drafts, when the knowledge directory is
-- read-only). A reindex reads them beside the directory's files: `source` is the whole
-- Markdown text with its front matter, exactly as a file would hold it.
CREATE TABLE knowledge_stored_documents (
    path       text        PRIMARY KEY,
    source     text        NOT NULL,
    -- The draft it came from, if any.
    draft_id   uuid        REFERENCES knowledge_drafts (id) ON DELETE SET NULL,
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
