-- The knowledge base, shared by every worker and API process.
--
-- `knowledge_state.version` goes up by one with every reindex that changed something; a
-- NOTIFY on `concierge_kb` tells every process to rebuild its search index from these tables.

CREATE TABLE knowledge_documents (
    path         text PRIMARY KEY,
    title        text        NOT NULL,
    category     text        NOT NULL,
    tags         text[]      NOT NULL DEFAULT '{}',
    language     text        NOT NULL,
    updated      text        NOT NULL,
    -- SHA-256 of the file: an unchanged file is not parsed into chunks again.
    content_hash text        NOT NULL,
    version      bigint      NOT NULL,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE knowledge_chunks (
    doc_path text    NOT NULL REFERENCES knowledge_documents (path) ON DELETE CASCADE,
    ord      integer NOT NULL,
    id       text    NOT NULL UNIQUE,
    heading  text    NOT NULL,
    body     text    NOT NULL,
    PRIMARY KEY (doc_path, ord)
);

CREATE TABLE knowledge_state (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO knowledge_state (version) VALUES (0);

CREATE TABLE reindex_runs (
    id           uuid PRIMARY KEY,
    status       text        NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    requested_by text        NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    -- The report of a finished run.
    report       jsonb,
    failure      text
);
-- Requests made while one is still queued join it: at most one queued run at a time.
CREATE UNIQUE INDEX reindex_runs_one_queued_idx ON reindex_runs ((true)) WHERE status = 'queued';
CREATE INDEX reindex_runs_requested_idx ON reindex_runs (requested_at DESC);

-- What each live worker process runs and which knowledge version it answers from.
CREATE TABLE worker_instances (
    id         text PRIMARY KEY,
    host       text        NOT NULL,
    pid        integer     NOT NULL,
    queues     text[]      NOT NULL,
    kb_version bigint      NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now()
);
