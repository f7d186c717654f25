-- The analysis side: claims that keep two workers off one revision, one row
-- per analysed ear (the metrics researchers query), the objects the worker
-- made (so the node knows which instances are results and how they may be
-- exported), and the export outbox. Times are microseconds since the epoch.

-- A worker takes the claim before it analyses; the lease is renewed while it
-- works, so a crashed worker's claim can be taken over once it expires.
CREATE TABLE claims (
	series_instance_uid TEXT NOT NULL,
	revision            BIGINT NOT NULL,
	model_sha256        TEXT NOT NULL,
	worker              TEXT NOT NULL,
	attempt             BIGINT NOT NULL,
	claimed_at          BIGINT NOT NULL,
	lease_until         BIGINT NOT NULL,
	finished_at         BIGINT,
	outcome             TEXT NOT NULL, -- running, done, flagged, failed, not-analysable
	PRIMARY KEY (series_instance_uid, revision, model_sha256)
);

-- One row per ear of an analysed revision (ear is left, right or unknown;
-- a revision that could not be analysed has one row with ear '' and the
-- reason). Landmarks are patient coordinates in mm (LPS).
CREATE TABLE analyses (
	id                  INTEGER PRIMARY KEY AUTOINCREMENT,
	series_instance_uid TEXT NOT NULL,
	study_instance_uid  TEXT NOT NULL,
	revision            BIGINT NOT NULL,
	ear                 TEXT NOT NULL,
	model_name          TEXT NOT NULL,
	model_version       TEXT NOT NULL,
	model_sha256        TEXT NOT NULL,
	status              TEXT NOT NULL, -- done, flagged, failed, not-analysable
	reason              TEXT NOT NULL,
	timings             TEXT NOT NULL, -- JSON object: stage -> seconds
	volume_mm3          DOUBLE PRECISION,
	helicotrema         TEXT NOT NULL, -- "x\y\z" mm, empty when absent
	oval_window         TEXT NOT NULL,
	round_window        TEXT NOT NULL,
	uncertainty         DOUBLE PRECISION,
	flagged             BOOLEAN NOT NULL,
	flag_reasons        TEXT NOT NULL, -- "; "-separated
	worker              TEXT NOT NULL,
	created_at          BIGINT NOT NULL,
	UNIQUE (series_instance_uid, revision, model_sha256, ear)
);
CREATE INDEX analyses_created ON analyses (created_at);

-- DICOM objects a worker made for a revision, recorded before it sends them
-- to the node: kind is seg, sr, kos-flag or kos-rejection.
CREATE TABLE result_objects (
	sop_instance_uid    TEXT PRIMARY KEY,
	sop_class_uid       TEXT NOT NULL,
	kind                TEXT NOT NULL,
	series_instance_uid TEXT NOT NULL, -- the analysed (source) series
	revision            BIGINT NOT NULL,
	model_sha256        TEXT NOT NULL,
	for_diagnosis       BOOLEAN NOT NULL, -- false: the model's manifest says not for diagnosis
	created_at          BIGINT NOT NULL
);
CREATE INDEX result_objects_series ON result_objects (series_instance_uid, revision);

-- The export outbox: one row per object and destination.
CREATE TABLE exports (
	id                  INTEGER PRIMARY KEY AUTOINCREMENT,
	destination         TEXT NOT NULL,
	sop_instance_uid    TEXT NOT NULL,
	series_instance_uid TEXT NOT NULL,
	state               TEXT NOT NULL, -- pending, sent, dead
	attempts            BIGINT NOT NULL,
	next_attempt_at     BIGINT NOT NULL,
	last_error          TEXT NOT NULL,
	created_at          BIGINT NOT NULL,
	sent_at             BIGINT,
	UNIQUE (destination, sop_instance_uid)
);
CREATE INDEX exports_due ON exports (state, next_attempt_at);
