-- Times are microseconds since the Unix epoch (UTC) in both dialects.
CREATE TABLE patients (
	pk                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	patient_id           TEXT NOT NULL,
	issuer_of_patient_id TEXT NOT NULL,
	patient_name         TEXT NOT NULL,
	patient_birth_date   TEXT NOT NULL,
	patient_sex          TEXT NOT NULL,
	UNIQUE (patient_id, issuer_of_patient_id)
);

CREATE TABLE studies (
	study_instance_uid       TEXT PRIMARY KEY,
	patient_pk               BIGINT NOT NULL REFERENCES patients (pk),
	study_date               TEXT NOT NULL,
	study_time               TEXT NOT NULL,
	accession_number         TEXT NOT NULL,
	study_id                 TEXT NOT NULL,
	referring_physician_name TEXT NOT NULL,
	study_description        TEXT NOT NULL,
	created_at               BIGINT NOT NULL
);
CREATE INDEX studies_patient ON studies (patient_pk);
CREATE INDEX studies_accession ON studies (accession_number);

CREATE TABLE series (
	series_instance_uid    TEXT PRIMARY KEY,
	study_instance_uid     TEXT NOT NULL REFERENCES studies (study_instance_uid),
	modality               TEXT NOT NULL,
	series_number          BIGINT,
	series_date            TEXT NOT NULL,
	series_time            TEXT NOT NULL,
	series_description     TEXT NOT NULL,
	body_part_examined     TEXT NOT NULL,
	frame_of_reference_uid TEXT NOT NULL,
	convolution_kernel     TEXT NOT NULL,
	image_type             TEXT NOT NULL,
	slice_thickness        DOUBLE PRECISION,
	spacing_between_slices DOUBLE PRECISION,
	pixel_spacing          TEXT NOT NULL,
	image_orientation      TEXT NOT NULL,
	rows_                  BIGINT,
	columns_               BIGINT,
	expected_count         BIGINT,
	source_ae              TEXT NOT NULL,
	instance_count         BIGINT NOT NULL,
	current_revision       BIGINT NOT NULL,
	created_at             BIGINT NOT NULL
);
CREATE INDEX series_study ON series (study_instance_uid);

-- One row per revision of a series: the state machine and its timers.
CREATE TABLE series_state (
	series_instance_uid TEXT NOT NULL REFERENCES series (series_instance_uid),
	revision            BIGINT NOT NULL,
	state               TEXT NOT NULL,
	reason              TEXT NOT NULL,
	instance_count      BIGINT NOT NULL,
	opened_at           BIGINT NOT NULL,
	last_instance_at    BIGINT NOT NULL,
	released_at         BIGINT,
	completed_at        BIGINT,
	updated_at          BIGINT NOT NULL,
	PRIMARY KEY (series_instance_uid, revision)
);
CREATE INDEX series_state_state ON series_state (state, last_instance_at);

CREATE TABLE instances (
	sop_instance_uid     TEXT NOT NULL,
	version              BIGINT NOT NULL,
	series_instance_uid  TEXT NOT NULL REFERENCES series (series_instance_uid),
	sop_class_uid        TEXT NOT NULL,
	instance_number      BIGINT,
	acquisition_number   BIGINT,
	transfer_syntax_uid  TEXT NOT NULL,
	specific_character_set TEXT NOT NULL,
	image_type           TEXT NOT NULL,
	slice_thickness      DOUBLE PRECISION,
	image_position       TEXT NOT NULL,
	image_orientation    TEXT NOT NULL,
	pixel_spacing        TEXT NOT NULL,
	rows_                BIGINT,
	columns_             BIGINT,
	number_of_frames     BIGINT,
	location             TEXT NOT NULL,
	size                 BIGINT NOT NULL,
	sha256               TEXT NOT NULL,
	source_ae            TEXT NOT NULL,
	is_result            BOOLEAN NOT NULL,
	revision             BIGINT NOT NULL,
	received_at          BIGINT NOT NULL,
	deleted_at           BIGINT,
	PRIMARY KEY (sop_instance_uid, version)
);
CREATE INDEX instances_series ON instances (series_instance_uid);

-- Rows written in the same transaction as the state change they announce;
-- a publisher sends them and marks them sent.
CREATE TABLE outbox (
	id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	subject    TEXT NOT NULL,
	msg_id     TEXT NOT NULL UNIQUE,
	payload    TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	lease_until BIGINT,
	sent_at     BIGINT
);
CREATE INDEX outbox_unsent ON outbox (sent_at, id);
