-- Board packs as drafts, approval and versions the Board receives.
--
-- A row is one build of a period's pack: its figures' fingerprint (sha256), what it showed after
-- disclosure control (figures), the PDF itself, and where it stands. ``version`` is the number the Board
-- sees: 1 for the first pack sent for a period, 2 for the revision that supersedes it, and so on. Drafts
-- built while waiting to be sent carry the number they would go out as; only one of them is ever sent.

ALTER TABLE ops.board_packs DROP CONSTRAINT board_packs_pkey;
ALTER TABLE ops.board_packs
    ADD COLUMN id               bigserial PRIMARY KEY,
    ADD COLUMN built_on         date,           -- the UK day it was built: "data as at"
    ADD COLUMN distribute_on    date,           -- the first day it may go to the Board (after the pre-briefs)
    ADD COLUMN inputs           text,           -- digest of the ledger state it was built from
    ADD COLUMN approved_at      timestamptz,
    ADD COLUMN approved_by      text,           -- who approved it, or 'auto-approval at the deadline'
    ADD COLUMN superseded_at    timestamptz,    -- replaced by a newer draft before it was sent
    ADD COLUMN figures          jsonb,          -- what it showed, after disclosure control: no raw counts
    ADD COLUMN pdf              bytea,          -- the pack as built; what is sent is read back from here
    ADD COLUMN pdf_sha256       char(64),
    ADD COLUMN html             text,           -- the accessible HTML copy
    ADD COLUMN summary_html     text,           -- the email summary
    ADD COLUMN csv              bytea;          -- the figures as CSV

-- Packs built before this migration: only the newest unsent one of a period can still be sent.
UPDATE ops.board_packs AS b SET superseded_at = now()
WHERE b.distributed_at IS NULL
  AND b.version < (SELECT max(x.version) FROM ops.board_packs AS x WHERE x.period_id = b.period_id);

-- Each version of a period's pack goes to the Board at most once.
CREATE UNIQUE INDEX board_packs_sent_once ON ops.board_packs (period_id, version) WHERE distributed_at IS NOT NULL;
-- At most one draft of a period is waiting to be sent.
CREATE UNIQUE INDEX board_packs_one_pending ON ops.board_packs (period_id)
    WHERE distributed_at IS NULL AND superseded_at IS NULL;
