BEGIN TRANSACTION;
CREATE TABLE deployments (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model TEXT NOT NULL,
            ts REAL NOT NULL,
            traffic_json TEXT NOT NULL CHECK (json_valid(traffic_json)),
            previous_json TEXT NOT NULL CHECK (json_valid(previous_json)),
            reason TEXT NOT NULL,
            actor TEXT NOT NULL
        );
INSERT INTO "deployments" VALUES(1,'sentiment',1004.0,'{"1": 100.0}','{}','initial deployment','serve');
INSERT INTO "deployments" VALUES(2,'sentiment',1005.0,'{"1": 90.0, "2": 10.0}','{"1": 100.0}','canary step 1','controller');
CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model TEXT NOT NULL,
            rollout_id TEXT,
            ts REAL NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            data_json TEXT NOT NULL CHECK (json_valid(data_json))
        );
INSERT INTO "events" VALUES(1,'sentiment','r1',1009.0,'rollout.step','step 1','{"step": 1}');
CREATE TABLE predictions (
            request_id TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            version TEXT NOT NULL,
            label_predicted TEXT NOT NULL,
            user_id TEXT,
            ts REAL NOT NULL,
            label TEXT,
            outcome INTEGER CHECK (outcome IN (0, 1)),
            feedback_ts REAL
        );
INSERT INTO "predictions" VALUES('q1','sentiment','2','positive','u1',1001.5,'positive',1,1010.0);
INSERT INTO "predictions" VALUES('q2','sentiment','1','negative',NULL,1002.5,NULL,NULL,NULL);
CREATE TABLE rollouts (
            model TEXT NOT NULL,
            rollout_id TEXT NOT NULL,
            strategy TEXT NOT NULL,
            status_json TEXT NOT NULL CHECK (json_valid(status_json)),
            active INTEGER NOT NULL CHECK (active IN (0, 1)),
            final_phase TEXT,
            started_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            finished_at REAL,
            PRIMARY KEY (model, rollout_id)
        );
INSERT INTO "rollouts" VALUES('sentiment','r1','canary','{"step": 1}',1,NULL,1008.0,1008.0,NULL);
CREATE TABLE shadows (
            model TEXT PRIMARY KEY,
            version TEXT NOT NULL,
            share REAL NOT NULL CHECK (share > 0 AND share <= 100),
            updated_at REAL NOT NULL
        );
INSERT INTO "shadows" VALUES('sentiment','3',20.0,1006.0);
CREATE TABLE versions (
            model TEXT NOT NULL,
            version TEXT NOT NULL,
            path TEXT NOT NULL,
            card_json TEXT NOT NULL CHECK (json_valid(card_json)),
            weights_sha256 TEXT NOT NULL,
            registered_at REAL NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('available', 'pruned')),
            PRIMARY KEY (model, version)
        );
INSERT INTO "versions" VALUES('sentiment','1','/srv/repo/sentiment/1','{"schema_version":1,"model":"sentiment","version":"1","kind":"student","labels":["negative","neutral","positive"],"max_seq_len":128,"accuracy":0.8,"accuracy_std":0.0,"accuracy_seeds":[],"eval_examples":100,"latency":[{"batch_size":1,"p50_ms":5.0,"p99_ms":9.0,"runs":50},{"batch_size":32,"p50_ms":40.0,"p99_ms":60.0,"runs":20}],"parameters":1000,"bytes":4000,"dtype":"float32","measured_on":"","created_at":"2026-01-01T00:00:00Z","lineage":{"weights_sha256":"sha-1","code_commit":"c0ffee","code_dirty":false,"data_fingerprint":"data-1","config_hash":"cfg-1","config":{"train":{"lr":0.001,"epochs":3},"temperature":2.0},"teacher_version":null,"base_model":""}}','sha-1',1001.0,'available');
INSERT INTO "versions" VALUES('sentiment','2','/srv/repo/sentiment/2','{"schema_version":1,"model":"sentiment","version":"2","kind":"student","labels":["negative","neutral","positive"],"max_seq_len":128,"accuracy":0.8,"accuracy_std":0.0,"accuracy_seeds":[],"eval_examples":100,"latency":[{"batch_size":1,"p50_ms":5.0,"p99_ms":9.0,"runs":50},{"batch_size":32,"p50_ms":40.0,"p99_ms":60.0,"runs":20}],"parameters":1000,"bytes":4000,"dtype":"float32","measured_on":"","created_at":"2026-01-01T00:00:00Z","lineage":{"weights_sha256":"sha-2","code_commit":"c0ffee","code_dirty":false,"data_fingerprint":"data-1","config_hash":"cfg-1","config":{"train":{"lr":0.001,"epochs":3},"temperature":2.0},"teacher_version":null,"base_model":""}}','sha-2',1002.0,'available');
INSERT INTO "versions" VALUES('sentiment','3','/srv/repo/sentiment/3','{"schema_version":1,"model":"sentiment","version":"3","kind":"student","labels":["negative","neutral","positive"],"max_seq_len":128,"accuracy":0.8,"accuracy_std":0.0,"accuracy_seeds":[],"eval_examples":100,"latency":[{"batch_size":1,"p50_ms":5.0,"p99_ms":9.0,"runs":50},{"batch_size":32,"p50_ms":40.0,"p99_ms":60.0,"runs":20}],"parameters":1000,"bytes":4000,"dtype":"float32","measured_on":"","created_at":"2026-01-01T00:00:00Z","lineage":{"weights_sha256":"sha-3","code_commit":"c0ffee","code_dirty":false,"data_fingerprint":"data-1","config_hash":"cfg-1","config":{"train":{"lr":0.001,"epochs":3},"temperature":2.0},"teacher_version":null,"base_model":""}}','sha-3',1003.0,'available');
CREATE TABLE warm (
            model TEXT NOT NULL,
            version TEXT NOT NULL,
            reason TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (model, version)
        );
INSERT INTO "warm" VALUES('sentiment','2','rollout r1',1007.0);
CREATE INDEX deployments_by_model ON deployments (model, id);
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (model) WHERE active = 1;
CREATE INDEX events_by_model ON events (model, id);
CREATE INDEX events_by_rollout ON events (model, rollout_id, id);
CREATE INDEX predictions_by_version ON predictions (model, version, ts);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('deployments',2);
INSERT INTO "sqlite_sequence" VALUES('events',1);
COMMIT;
