-- Every Board pack built for a period: a new version whenever its content changes, and when it went out.
CREATE TABLE ops.board_packs (
    period_id       text NOT NULL,
    version         integer NOT NULL CHECK (version >= 1),
    sha256          char(64) NOT NULL,
    path            text NOT NULL,          -- relative to the var/ folder
    created_at      timestamptz NOT NULL DEFAULT now(),
    distributed_at  timestamptz,
    PRIMARY KEY (period_id, version)
);
