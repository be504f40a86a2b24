-- Decision evaluations (`concierge eval decisions`), kept so that the console can list past
-- runs and prompt versions can be told apart over time. A plain run is one `eval_runs` row; a
-- `--compare` run is two rows, sides `a` and `b`, linked by their `eval_comparisons` row.
CREATE TABLE eval_comparisons (
    id           uuid PRIMARY KEY,
    -- Conversations A decided right and B wrong, and the other way round (McNemar's b and c).
    a_only_right integer          NOT NULL CHECK (a_only_right >= 0),
    b_only_right integer          NOT NULL CHECK (b_only_right >= 0),
    -- McNemar's exact two-sided p-value; 1 when no pair is discordant.
    p_value      double precision NOT NULL CHECK (p_value >= 0 AND p_value <= 1),
    -- The conversations where the two decided differently, with both decisions.
    differing    jsonb            NOT NULL
);

CREATE TABLE eval_runs (
    id              uuid PRIMARY KEY,
    started_at      timestamptz      NOT NULL,
    finished_at     timestamptz      NOT NULL,
    -- The labelled set, as given on the command line, and how many conversations it held.
    set_file        text             NOT NULL,
    cases           integer          NOT NULL CHECK (cases >= 0),
    -- `offline`, or the model's provider (`openai`, `deepseek`).
    engine          text             NOT NULL,
    model           text,
    prompt_version  text,
    prompts_dir     text,
    decision_format text,
    accuracy        double precision NOT NULL,
    -- Everything the report printed: per-label counts, citation and action accuracy, misses.
    figures         jsonb            NOT NULL,
    comparison_id   uuid REFERENCES eval_comparisons (id) ON DELETE CASCADE,
    side            text CHECK (side IN ('a', 'b')),
    CHECK ((comparison_id IS NULL) = (side IS NULL)),
    UNIQUE (comparison_id, side)
);
CREATE INDEX eval_runs_started_idx ON eval_runs (started_at DESC);
