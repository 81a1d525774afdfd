//! Tests of the legacy-object reader against the official client: every
//! fixture under `tests/fixtures` was written by anki 26.9.3, and its
//! `.expected.json` is what that client's own downgrade to schema 11 wrote
//! (see `tests/fixtures/make_collections.py`). Both the schema-18 file and
//! the downgraded schema-11 copy must convert to exactly that JSON.

use std::path::{Path, PathBuf};

use prost::Message;
use rusqlite::Connection;
use serde_json::{json, Map, Value};

use super::proto::{DeckCommon, DeckConfigConfig, FieldConfig, NotetypeConfig, TemplateConfig};
use super::schema18::f32_value;
use super::{read_objects, register_unicase, LegacyObjects, ObjectsError};

const FIXTURES: &[&str] = &["minimal", "rich", "extras"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// Schema-18 files are in WAL mode, so SQLite needs to create companion files
/// next to them: always work on a private copy.
fn open_copy(name: &str) -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collection.anki2");
    std::fs::copy(fixture(name), &path).unwrap();
    let conn = Connection::open(&path).unwrap();
    register_unicase(&conn).unwrap();
    (dir, conn)
}

fn version(conn: &Connection) -> u32 {
    conn.query_row("SELECT ver FROM col", [], |r| r.get(0))
        .unwrap()
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(&format!("{name}.expected.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The shape of the `col` columns, so that the comparison is keyed by id /
/// name like the official file. Going through text once makes our numbers
/// pass the same JSON parser as the expected file's.
fn as_col_json(objects: &LegacyObjects) -> Value {
    fn keyed(list: &[(i64, Map<String, Value>)]) -> Value {
        let map: Map<String, Value> = list
            .iter()
            .map(|(id, o)| (id.to_string(), Value::Object(o.clone())))
            .collect();
        assert_eq!(map.len(), list.len(), "duplicate ids");
        Value::Object(map)
    }
    let conf: Map<String, Value> = objects.config.iter().cloned().collect();
    assert_eq!(conf.len(), objects.config.len(), "duplicate config keys");
    let tags: Map<String, Value> = objects
        .tags
        .iter()
        .map(|(t, u)| (t.clone(), json!(u)))
        .collect();
    assert_eq!(tags.len(), objects.tags.len(), "duplicate tags");
    let value = json!({
        "models": keyed(&objects.notetypes),
        "decks": keyed(&objects.decks),
        "dconf": keyed(&objects.deck_configs),
        "conf": conf,
        "tags": tags,
    });
    serde_json::from_str(&serde_json::to_string(&value).unwrap()).unwrap()
}

/// Compares object by object and key by key so a failure names the culprit.
fn assert_same(fixture_name: &str, ours: &Value, theirs: &Value) {
    let mut problems = Vec::new();
    for section in ["models", "decks", "dconf", "conf", "tags"] {
        let a = ours[section].as_object().unwrap();
        let b = theirs[section].as_object().unwrap();
        for key in b.keys().filter(|k| !a.contains_key(*k)) {
            problems.push(format!("{section}[{key}] missing"));
        }
        for key in a.keys().filter(|k| !b.contains_key(*k)) {
            problems.push(format!("{section}[{key}] unexpected"));
        }
        for (key, av) in a {
            let Some(bv) = b.get(key) else { continue };
            if av == bv {
                continue;
            }
            match (av.as_object(), bv.as_object()) {
                (Some(ao), Some(bo)) => {
                    let keys: std::collections::BTreeSet<&String> =
                        ao.keys().chain(bo.keys()).collect();
                    for k in keys {
                        if ao.get(k) != bo.get(k) {
                            problems.push(format!(
                                "{section}[{key}].{k}: ours {:?} official {:?}",
                                ao.get(k),
                                bo.get(k)
                            ));
                        }
                    }
                }
                _ => problems.push(format!("{section}[{key}]: ours {av} official {bv}")),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{fixture_name}: {} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(ours, theirs);
}

#[test]
fn schema18_files_match_the_official_downgrade() {
    for name in FIXTURES {
        let (_dir, conn) = open_copy(&format!("{name}.anki2"));
        assert_eq!(version(&conn), 18, "{name}");
        let objects = read_objects(&conn, 18).unwrap();
        assert_same(name, &as_col_json(&objects), &expected(name));
    }
}

#[test]
fn schema11_files_match_the_official_downgrade() {
    for name in FIXTURES {
        let (_dir, conn) = open_copy(&format!("{name}.v11.anki2"));
        assert_eq!(version(&conn), 11, "{name}");
        let objects = read_objects(&conn, 11).unwrap();
        assert_same(name, &as_col_json(&objects), &expected(name));
    }
}

#[test]
fn fixtures_exercise_the_interesting_cases() {
    // Guards against a regenerated fixture silently losing coverage.
    let rich = expected("rich");
    let dconf = rich["dconf"].as_object().unwrap();
    let intensive = dconf.values().find(|c| c["name"] == "Intensive").unwrap();
    assert_eq!(intensive["new"]["order"], 0);
    assert_eq!(intensive["new"]["initialFactor"], 2300);
    assert_eq!(intensive["autoplay"], false);
    assert_eq!(intensive["replayq"], false);
    assert_eq!(intensive["timer"], 1);
    assert_eq!(intensive["desiredRetention"], 0.87);
    let decks = rich["decks"].as_object().unwrap();
    assert!(decks.values().any(|d| d["name"] == "A::B::C"));
    assert!(decks
        .values()
        .any(|d| d["dyn"] == 1 && d["resched"] == false));
    assert!(decks.values().any(|d| d["desiredRetention"] == 83));
    assert!(rich["tags"].as_object().unwrap().contains_key("a::b"));

    let extras = expected("extras");
    let odd = extras["dconf"]
        .as_object()
        .unwrap()
        .values()
        .find(|c| c["name"] == "Odd")
        .unwrap();
    assert_eq!(odd["new"]["extraNew"], "n");
    assert_eq!(odd["extraTop"], 5);
    assert!(extras["models"]
        .as_object()
        .unwrap()
        .values()
        .any(|m| m["myExtra"]["a"] == 1 && m["flds"][0]["media"] == json!([])));
}

#[test]
fn schema18_files_pass_integrity_check_with_our_collation() {
    // The indexes on unicase columns were built by the official client with
    // non-ASCII names; a different ordering would show up here.
    for name in FIXTURES {
        let (_dir, conn) = open_copy(&format!("{name}.anki2"));
        let result: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(result, "ok", "{name}");
    }
}

#[test]
fn unicase_collation_folds_case_beyond_ascii() {
    let conn = Connection::open_in_memory().unwrap();
    register_unicase(&conn).unwrap();
    let same: bool = conn
        .query_row(
            "SELECT 'Ünïcode' = 'üNÏCODE' COLLATE unicase",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(same);
    let less: bool = conn
        .query_row("SELECT 'a' < 'B' COLLATE unicase", [], |r| r.get(0))
        .unwrap();
    assert!(less);
}

#[test]
fn f32_values_are_rendered_like_the_official_writer() {
    assert_eq!(f32_value(0.9), json!(0.9));
    assert_eq!(f32_value(1.0), json!(1.0));
    assert_eq!(f32_value(0.0046), json!(0.0046));
    assert_eq!(f32_value(f32::NAN), Value::Null);
    assert_eq!(f32_value(f32::INFINITY), Value::Null);
    assert_eq!(f32_value(f32::MAX), json!(3.4028235e38));
}

// ------------------------------------------------------------- bad input

fn first_id(conn: &Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT min(id) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn garbage_notetype_blob_is_a_named_error() {
    let (_dir, conn) = open_copy("rich.anki2");
    let id = first_id(&conn, "notetypes");
    conn.execute(
        "UPDATE notetypes SET config = x'ffffffff' WHERE id = ?",
        [id],
    )
    .unwrap();
    let err = read_objects(&conn, 18).unwrap_err();
    assert!(matches!(err, ObjectsError::Protobuf { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("notetype {id}: config: protobuf decode error")),
        "{text}"
    );
}

#[test]
fn garbage_field_blob_is_a_named_error() {
    let (_dir, conn) = open_copy("rich.anki2");
    let id: i64 = conn
        .query_row("SELECT min(ntid) FROM fields", [], |r| r.get(0))
        .unwrap();
    conn.execute(
        "UPDATE fields SET config = x'0a' WHERE ntid = ? AND ord = 1",
        [id],
    )
    .unwrap();
    let text = read_objects(&conn, 18).unwrap_err().to_string();
    assert!(
        text.starts_with(&format!(
            "notetype {id}: field 1 config: protobuf decode error"
        )),
        "{text}"
    );
}

#[test]
fn deck_without_kind_is_an_error() {
    let (_dir, conn) = open_copy("minimal.anki2");
    conn.execute("UPDATE decks SET kind = x'' WHERE id = 1", [])
        .unwrap();
    let text = read_objects(&conn, 18).unwrap_err().to_string();
    assert_eq!(text, "deck 1: kind is neither normal nor filtered");
}

#[test]
fn non_blob_config_and_bad_config_value_are_errors() {
    let (_dir, conn) = open_copy("minimal.anki2");
    conn.execute("UPDATE deck_config SET config = 5 WHERE id = 1", [])
        .unwrap();
    let text = read_objects(&conn, 18).unwrap_err().to_string();
    assert_eq!(text, "deck config 1: config: not a blob");

    let (_dir, conn) = open_copy("minimal.anki2");
    conn.execute(
        "UPDATE config SET val = CAST('{nope' AS BLOB) WHERE KEY = 'curDeck'",
        [],
    )
    .unwrap();
    let text = read_objects(&conn, 18).unwrap_err().to_string();
    assert!(
        text.starts_with("config key \"curDeck\": value is not JSON"),
        "{text}"
    );
}

#[test]
fn legacy_models_that_are_not_json_are_an_error() {
    let (_dir, conn) = open_copy("minimal.v11.anki2");
    conn.execute("UPDATE col SET models = '{\"1\": {'", [])
        .unwrap();
    let err = read_objects(&conn, 11).unwrap_err();
    assert!(
        matches!(
            err,
            ObjectsError::LegacyJson {
                column: "models",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("col.models: invalid JSON"),
        "{err}"
    );
}

#[test]
fn legacy_columns_must_be_objects_keyed_by_id() {
    let cases = [
        ("decks", "''", "col.decks: invalid JSON"),
        (
            "dconf",
            "'[1, 2]'",
            "col.dconf: expected a JSON object, found an array",
        ),
        (
            "models",
            "'{\"abc\": {}}'",
            "col.models: key \"abc\" is not an integer id",
        ),
        (
            "decks",
            "'{\"1\": 5}'",
            "col.decks: 1: expected a JSON object, found a number",
        ),
        (
            "tags",
            "'{\"t\": \"x\"}'",
            "col.tags: tag \"t\": usn \"x\" is not a 32-bit integer",
        ),
        ("conf", "x'ff'", "col.conf: not UTF-8 text"),
    ];
    for (column, value, message) in cases {
        let (_dir, conn) = open_copy("minimal.v11.anki2");
        conn.execute(&format!("UPDATE col SET {column} = {value}"), [])
            .unwrap();
        let text = read_objects(&conn, 11).unwrap_err().to_string();
        assert!(text.starts_with(message), "{text}");
    }
}

#[test]
fn missing_tables_are_errors_not_panics() {
    for table in [
        "decks",
        "notetypes",
        "fields",
        "templates",
        "deck_config",
        "config",
        "tags",
    ] {
        let (_dir, conn) = open_copy("minimal.anki2");
        conn.execute_batch(&format!("DROP TABLE {table}")).unwrap();
        let err = read_objects(&conn, 18).unwrap_err();
        assert!(
            matches!(err, ObjectsError::Sqlite { .. }),
            "{table}: {err:?}"
        );
        assert!(err.to_string().contains(table), "{err}");
    }
    let conn = Connection::open_in_memory().unwrap();
    let err = read_objects(&conn, 11).unwrap_err();
    assert!(
        err.to_string().starts_with("reading the col row: "),
        "{err}"
    );
}

#[test]
fn a_schema18_file_read_as_schema11_is_an_error() {
    // Its col row holds empty strings in place of the legacy JSON.
    let (_dir, conn) = open_copy("minimal.anki2");
    let text = read_objects(&conn, 11).unwrap_err().to_string();
    assert!(text.starts_with("col.conf: invalid JSON"), "{text}");
}

#[test]
fn intermediate_and_unknown_versions_are_rejected() {
    let (_dir, conn) = open_copy("minimal.anki2");
    for v in [0, 10, 12, 13, 14, 15, 16, 17, 19] {
        let err = read_objects(&conn, v).unwrap_err();
        assert!(matches!(err, ObjectsError::UnsupportedVersion(n) if n == v));
    }
    let text = read_objects(&conn, 16).unwrap_err().to_string();
    assert!(
        text.contains("version 16") && text.contains("14-17"),
        "{text}"
    );
}

// ------------------------------------------------------------------ fuzz

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, max_len: u64) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

const BLOB_COLUMNS: &[(&str, &str)] = &[
    ("notetypes", "config"),
    ("fields", "config"),
    ("templates", "config"),
    ("decks", "common"),
    ("decks", "kind"),
    ("deck_config", "config"),
];

#[test]
fn random_bytes_in_any_blob_never_panic() {
    let (_dir, conn) = open_copy("rich.anki2");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut outcomes = [0usize; 2];
    for (table, column) in BLOB_COLUMNS {
        let originals: Vec<(i64, Vec<u8>)> = {
            let mut stmt = conn
                .prepare(&format!("SELECT rowid, {column} FROM {table}"))
                .or_else(|_| {
                    // WITHOUT ROWID tables have no rowid; they are keyed by
                    // (ntid, ord), which one combined number can stand for.
                    conn.prepare(&format!("SELECT ntid * 1000 + ord, {column} FROM {table}"))
                })
                .unwrap();
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
            rows.map(Result::unwrap).collect()
        };
        let key = if *table == "fields" || *table == "templates" {
            "ntid * 1000 + ord"
        } else {
            "rowid"
        };
        let update = format!("UPDATE {table} SET {column} = ? WHERE {key} = ?");
        for round in 0..150 {
            for (id, original) in &originals {
                let blob = match round % 3 {
                    // pure noise
                    0 => rng.bytes(48),
                    // a valid blob with a few bytes flipped: decodes more often
                    1 => {
                        let mut b = original.clone();
                        for _ in 0..=rng.below(3) {
                            if !b.is_empty() {
                                let i = rng.below(b.len() as u64) as usize;
                                b[i] = rng.next() as u8;
                            }
                        }
                        b
                    }
                    // a truncated valid blob
                    _ => original[..rng.below(original.len() as u64 + 1) as usize].to_vec(),
                };
                conn.execute(&update, rusqlite::params![blob, id]).unwrap();
            }
            match read_objects(&conn, 18) {
                Ok(_) => outcomes[0] += 1,
                Err(err) => {
                    assert!(!err.to_string().is_empty());
                    outcomes[1] += 1;
                }
            }
        }
        for (id, original) in &originals {
            conn.execute(&update, rusqlite::params![original, id])
                .unwrap();
        }
    }
    // Both paths must have been exercised, or the fuzzing proves little.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

#[test]
fn random_other_json_never_panics_and_never_shadows_typed_keys() {
    let mut rng = Rng(42);
    let candidates: [&[u8]; 6] = [
        b"",
        b"null",
        b"[1,2]",
        b"{\"id\": 5, \"name\": \"x\", \"new\": 3, \"rev\": {\"perDay\": 1, \"k\": 2}}",
        b"{\"md\": \"yes\", \"terms\": [], \"flds\": 1, \"font\": 0, \"qfmt\": 0}",
        b"{\xff",
    ];
    let (_dir, conn) = open_copy("extras.anki2");
    for round in 0..60 {
        let other: Vec<u8> = if round < candidates.len() {
            candidates[round].to_vec()
        } else {
            rng.bytes(24)
        };
        let nt = NotetypeConfig {
            kind: (rng.next() % 4) as i32 - 1,
            sort_field_idx: rng.next() as u32,
            other: other.clone(),
            ..Default::default()
        };
        let field = FieldConfig {
            font_size: rng.next() as u32,
            other: other.clone(),
            ..Default::default()
        };
        let template = TemplateConfig {
            browser_font_size: rng.next() as u32,
            target_deck_id: rng.next() as i64,
            other: other.clone(),
            ..Default::default()
        };
        let common = DeckCommon {
            last_day_studied: rng.next() as u32,
            other: other.clone(),
            ..Default::default()
        };
        let dconf = DeckConfigConfig {
            initial_ease: f32::from_bits(rng.next() as u32),
            new_card_insert_order: (rng.next() % 5) as i32 - 2,
            answer_action: (rng.next() % 8) as i32 - 2,
            other: other.clone(),
            ..Default::default()
        };
        conn.execute("UPDATE notetypes SET config = ?", [nt.encode_to_vec()])
            .unwrap();
        conn.execute("UPDATE fields SET config = ?", [field.encode_to_vec()])
            .unwrap();
        conn.execute(
            "UPDATE templates SET config = ?",
            [template.encode_to_vec()],
        )
        .unwrap();
        conn.execute("UPDATE decks SET common = ?", [common.encode_to_vec()])
            .unwrap();
        conn.execute("UPDATE deck_config SET config = ?", [dconf.encode_to_vec()])
            .unwrap();
        let objects = read_objects(&conn, 18).unwrap();
        for (id, nt) in &objects.notetypes {
            assert_eq!(nt["id"], json!(id));
            assert!(nt["flds"].is_array() && nt["tmpls"].is_array());
            for f in nt["flds"].as_array().unwrap() {
                assert!(f["font"].is_string());
            }
            for t in nt["tmpls"].as_array().unwrap() {
                assert!(t["qfmt"].is_string());
            }
        }
        for (id, d) in &objects.decks {
            assert_eq!(d["id"], json!(id));
            if d["dyn"] == 1 {
                assert!(d["terms"].is_array());
            }
        }
        for (id, c) in &objects.deck_configs {
            assert_eq!(c["id"], json!(id));
            assert!(c["new"]["perDay"].is_u64());
            assert!(c["rev"]["perDay"].is_u64());
            let order = c["new"]["order"].as_u64().unwrap();
            assert!(order <= 1);
        }
    }
}
