-- Daily conversation metrics, written by the metrics job (re-computable for any day).
CREATE TABLE conversation_metrics (
    day         date        PRIMARY KEY,
    figures     jsonb       NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now()
);
