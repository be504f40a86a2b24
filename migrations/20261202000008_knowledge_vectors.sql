-- Embedding vectors of knowledge chunks, for the semantic half of the search.
--
-- A vector is keyed by the embedding model and the SHA-256 of the exact text embedded (the
-- passage prefix, the document title, the heading and the body), so an unchanged chunk keeps
-- its vector across reindexes and a changed one gets a new row. `vector_model` in
-- `knowledge_state` names the set the processes search; while a new model's set is being
-- filled the old one keeps serving, and the switch is one update with a version bump.

CREATE TABLE knowledge_vectors (
    model      text        NOT NULL,
    text_hash  text        NOT NULL,
    vector     real[]      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, text_hash)
);

-- How each model's vectors were made, so that queries against them are embedded the same way.
CREATE TABLE knowledge_vector_models (
    model          text        PRIMARY KEY,
    query_model    text        NOT NULL,
    query_prefix   text        NOT NULL,
    passage_prefix text        NOT NULL,
    dims           integer     NOT NULL CHECK (dims > 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE knowledge_state ADD COLUMN vector_model text REFERENCES knowledge_vector_models (model);
