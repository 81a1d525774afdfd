//! Converts the schema-18 tables (`notetypes`+`fields`+`templates`, `decks`,
//! `deck_config`, `config`, `tags`) into legacy JSON objects, reproducing what
//! the official client's downgrade to schema 11 writes: the same keys, the
//! same inversions and casts, the same clamping of out-of-range deck options,
//! and the protobuf `other` field merged back in.
//!
//! It must never write to the database and never guess: a blob that does not
//! decode, a deck without a kind or a config value that is not JSON is an
//! error naming the object, because the official downgrade fails on those too.
//! Where the official code is lenient (an `other` blob that is not a JSON
//! object is treated as empty) this module is lenient in the same way.

use std::collections::BTreeMap;

use prost::Message;
use rusqlite::types::ValueRef;
use serde_json::{json, Value};

use super::proto::{
    CardRequirement, DayLimit, DeckCommon, DeckConfigConfig, DeckKind, DeckKindContainer,
    FieldConfig, FilteredDeck, NormalDeck, NotetypeConfig, TemplateConfig,
};
use super::{JsonObject, LegacyObjects, ObjectsError};

pub(super) fn read(conn: &rusqlite::Connection) -> Result<LegacyObjects, ObjectsError> {
    Ok(LegacyObjects {
        notetypes: read_notetypes(conn)?,
        decks: read_decks(conn)?,
        deck_configs: read_deck_configs(conn)?,
        config: read_config(conn)?,
        tags: read_tags(conn)?,
    })
}

// ---------------------------------------------------------------- notetypes

/// Keys the notetype serializer writes itself; a copy left in `other` (from
/// an older upgrade) must not shadow the typed value.
pub(super) const RESERVED_NOTETYPE_KEYS: &[&str] = &[
    "id",
    "name",
    "type",
    "mod",
    "usn",
    "sortf",
    "did",
    "tmpls",
    "flds",
    "css",
    "latexPre",
    "latexPost",
    "latexsvg",
    "req",
    "originalStockKind",
    "originalId",
];

pub(super) const RESERVED_FIELD_KEYS: &[&str] = &[
    "name",
    "ord",
    "sticky",
    "rtl",
    "plainText",
    "font",
    "size",
    "collapsed",
    "description",
    "excludeFromSearch",
    "id",
    "tag",
    "preventDeletion",
];

pub(super) const RESERVED_TEMPLATE_KEYS: &[&str] = &[
    "name", "ord", "did", "afmt", "bafmt", "qfmt", "bqfmt", "bfont", "bsize", "id",
];

struct ChildRow {
    ntid: i64,
    ord: i64,
    name: String,
    config: Option<Vec<u8>>,
}

fn read_notetypes(conn: &rusqlite::Connection) -> Result<Vec<(i64, JsonObject)>, ObjectsError> {
    let mut fields = read_children(conn, "fields")?;
    let mut templates = read_children(conn, "templates")?;

    let rows = query_rows(
        conn,
        "SELECT id, name, mtime_secs, usn, config FROM notetypes ORDER BY id",
        "notetypes",
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i32>(3)?,
                blob_of(row.get_ref(4)?),
            ))
        },
    )?;

    let mut out = Vec::with_capacity(rows.len());
    for (id, name, mtime, usn, config) in rows {
        let object = format!("notetype {id}");
        let config: NotetypeConfig = decode(&object, "config", config)?;
        let flds = fields
            .remove(&id)
            .unwrap_or_default()
            .into_iter()
            .map(|row| field_json(&object, row))
            .collect::<Result<Vec<_>, _>>()?;
        let tmpls = templates
            .remove(&id)
            .unwrap_or_default()
            .into_iter()
            .map(|row| template_json(&object, row))
            .collect::<Result<Vec<_>, _>>()?;
        out.push((id, notetype_json(id, name, mtime, usn, config, flds, tmpls)));
    }
    Ok(out)
}

/// Fields and templates of all notetypes, grouped by notetype and in `ord`
/// order (the order the legacy `flds`/`tmpls` arrays use).
fn read_children(
    conn: &rusqlite::Connection,
    table: &'static str,
) -> Result<BTreeMap<i64, Vec<ChildRow>>, ObjectsError> {
    let sql = format!("SELECT ntid, ord, name, config FROM {table} ORDER BY ntid, ord");
    let rows = query_rows(conn, &sql, table, |row| {
        Ok(ChildRow {
            ntid: row.get(0)?,
            ord: row.get(1)?,
            name: row.get(2)?,
            config: blob_of(row.get_ref(3)?),
        })
    })?;
    let mut grouped: BTreeMap<i64, Vec<ChildRow>> = BTreeMap::new();
    for row in rows {
        grouped.entry(row.ntid).or_default().push(row);
    }
    Ok(grouped)
}

fn notetype_json(
    id: i64,
    name: String,
    mtime: i64,
    usn: i32,
    c: NotetypeConfig,
    flds: Vec<Value>,
    tmpls: Vec<Value>,
) -> JsonObject {
    let mut o = JsonObject::new();
    o.insert("id".into(), id.into());
    o.insert("name".into(), name.into());
    o.insert("type".into(), i32::from(c.kind == 1).into());
    o.insert("mod".into(), mtime.into());
    o.insert("usn".into(), usn.into());
    // The legacy format stores these as 16-bit values; the official
    // downgrade truncates, so a client sees the truncated value either way.
    o.insert("sortf".into(), (c.sort_field_idx as u16).into());
    o.insert(
        "did".into(),
        nonzero_id(c.target_deck_id_unused != 0, c.target_deck_id_unused),
    );
    o.insert("tmpls".into(), Value::Array(tmpls));
    o.insert("flds".into(), Value::Array(flds));
    o.insert("css".into(), c.css.into());
    o.insert("latexPre".into(), c.latex_pre.into());
    o.insert("latexPost".into(), c.latex_post.into());
    o.insert("latexsvg".into(), c.latex_svg.into());
    o.insert(
        "req".into(),
        Value::Array(c.reqs.iter().map(requirement_json).collect()),
    );
    // Both keys are left out at their default so that stock-less notetypes
    // look exactly like those written by clients that predate them.
    if c.original_stock_kind != 0 {
        o.insert("originalStockKind".into(), c.original_stock_kind.into());
    }
    if let Some(original) = c.original_id {
        o.insert("originalId".into(), original.into());
    }
    merge_other(&mut o, parse_other(&c.other), RESERVED_NOTETYPE_KEYS);
    o
}

fn requirement_json(r: &CardRequirement) -> Value {
    let kind = match r.kind {
        1 => "any",
        2 => "all",
        // Unknown kinds read as the proto default, which is "none".
        _ => "none",
    };
    let ords: Vec<Value> = r.field_ords.iter().map(|&n| (n as u16).into()).collect();
    json!([r.card_ord as u16, kind, ords])
}

fn field_json(notetype: &str, row: ChildRow) -> Result<Value, ObjectsError> {
    let ord = child_ord(notetype, "field", row.ord)?;
    let c: FieldConfig = decode(notetype, &format!("field {} config", row.ord), row.config)?;
    let mut o = JsonObject::new();
    o.insert("name".into(), row.name.into());
    o.insert("ord".into(), ord.into());
    o.insert("sticky".into(), c.sticky.into());
    o.insert("rtl".into(), c.rtl.into());
    o.insert("font".into(), c.font_name.into());
    o.insert("size".into(), (c.font_size as u16).into());
    o.insert("description".into(), c.description.into());
    o.insert("plainText".into(), c.plain_text.into());
    o.insert("collapsed".into(), c.collapsed.into());
    o.insert("excludeFromSearch".into(), c.exclude_from_search.into());
    o.insert("id".into(), c.id.into());
    o.insert("tag".into(), c.tag.into());
    o.insert("preventDeletion".into(), c.prevent_deletion.into());
    merge_other(&mut o, parse_other(&c.other), RESERVED_FIELD_KEYS);
    Ok(Value::Object(o))
}

fn template_json(notetype: &str, row: ChildRow) -> Result<Value, ObjectsError> {
    let ord = child_ord(notetype, "template", row.ord)?;
    let c: TemplateConfig = decode(
        notetype,
        &format!("template {} config", row.ord),
        row.config,
    )?;
    let mut o = JsonObject::new();
    o.insert("name".into(), row.name.into());
    o.insert("ord".into(), ord.into());
    o.insert("qfmt".into(), c.q_format.into());
    o.insert("afmt".into(), c.a_format.into());
    o.insert("bqfmt".into(), c.q_format_browser.into());
    o.insert("bafmt".into(), c.a_format_browser.into());
    // Unlike the notetype's own `did`, a template override only counts when
    // positive.
    o.insert(
        "did".into(),
        nonzero_id(c.target_deck_id > 0, c.target_deck_id),
    );
    o.insert("bfont".into(), c.browser_font_name.into());
    o.insert("bsize".into(), (c.browser_font_size as u8).into());
    o.insert("id".into(), c.id.into());
    merge_other(&mut o, parse_other(&c.other), RESERVED_TEMPLATE_KEYS);
    Ok(Value::Object(o))
}

/// `ord` is an unsigned 32-bit value in the official model; anything else
/// makes its reader fail, so it is reported rather than silently wrapped.
fn child_ord(notetype: &str, what: &str, ord: i64) -> Result<u16, ObjectsError> {
    u32::try_from(ord)
        .map(|o| o as u16)
        .map_err(|_| ObjectsError::Invalid {
            object: notetype.to_owned(),
            problem: format!("{what} ord {ord} is out of range"),
        })
}

// -------------------------------------------------------------------- decks

/// Keys the deck serializer writes itself. `md` and the filtered-deck keys are
/// deliberately absent: the official list omits them, so a copy in `other`
/// can override `md`, while the filtered-deck keys (written after `other`)
/// override the copy instead.
const RESERVED_DECK_KEYS: &[&str] = &[
    "usn",
    "revToday",
    "newLimit",
    "dyn",
    "reviewLimit",
    "newToday",
    "timeToday",
    "reviewLimitToday",
    "extendNew",
    "mod",
    "newLimitToday",
    "desc",
    "name",
    "lrnToday",
    "conf",
    "browserCollapsed",
    "extendRev",
    "id",
    "collapsed",
    "desiredRetention",
];

fn read_decks(conn: &rusqlite::Connection) -> Result<Vec<(i64, JsonObject)>, ObjectsError> {
    let rows = query_rows(
        conn,
        "SELECT id, name, mtime_secs, usn, common, kind FROM decks ORDER BY id",
        "decks",
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i32>(3)?,
                blob_of(row.get_ref(4)?),
                blob_of(row.get_ref(5)?),
            ))
        },
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, name, mtime, usn, common, kind) in rows {
        let object = format!("deck {id}");
        let common: DeckCommon = decode(&object, "common", common)?;
        let kind: DeckKindContainer = decode(&object, "kind", kind)?;
        let kind = kind.kind.ok_or_else(|| ObjectsError::Invalid {
            object: object.clone(),
            problem: "kind is neither normal nor filtered".into(),
        })?;
        out.push((id, deck_json(id, &name, mtime, usn, common, kind)));
    }
    Ok(out)
}

fn deck_json(
    id: i64,
    native_name: &str,
    mtime: i64,
    usn: i32,
    common: DeckCommon,
    kind: DeckKind,
) -> JsonObject {
    let mut o = JsonObject::new();
    o.insert("id".into(), id.into());
    o.insert("mod".into(), mtime.into());
    o.insert("name".into(), native_name.replace('\x1f', "::").into());
    o.insert("usn".into(), usn.into());
    // Schema 18 keeps a single "last studied" day for all four counters.
    let day = common.last_day_studied as i32;
    o.insert("lrnToday".into(), json!([day, common.learning_studied]));
    o.insert("revToday".into(), json!([day, common.review_studied]));
    o.insert("newToday".into(), json!([day, common.new_studied]));
    o.insert(
        "timeToday".into(),
        json!([day, common.milliseconds_studied]),
    );
    o.insert("collapsed".into(), common.study_collapsed.into());
    o.insert("browserCollapsed".into(), common.browser_collapsed.into());
    let (desc, markdown) = match &kind {
        DeckKind::Normal(n) => (n.description.clone(), n.markdown_description),
        DeckKind::Filtered(_) => (String::new(), false),
    };
    o.insert("desc".into(), desc.into());
    // Old clients never wrote `md`; it only appears when set.
    if markdown {
        o.insert("md".into(), true.into());
    }
    o.insert(
        "dyn".into(),
        i32::from(matches!(kind, DeckKind::Filtered(_))).into(),
    );
    merge_other(&mut o, parse_other(&common.other), RESERVED_DECK_KEYS);
    match kind {
        DeckKind::Normal(n) => normal_deck_json(&mut o, n),
        DeckKind::Filtered(f) => filtered_deck_json(&mut o, f),
    }
    o
}

fn normal_deck_json(o: &mut JsonObject, n: NormalDeck) {
    o.insert("conf".into(), n.config_id.into());
    o.insert("extendNew".into(), (n.extend_new as i32).into());
    o.insert("extendRev".into(), (n.extend_review as i32).into());
    o.insert("reviewLimit".into(), n.review_limit.into());
    o.insert("newLimit".into(), n.new_limit.into());
    o.insert(
        "reviewLimitToday".into(),
        day_limit_json(n.review_limit_today),
    );
    o.insert("newLimitToday".into(), day_limit_json(n.new_limit_today));
    // Legacy JSON carries a whole percent; the multiplication is done in f32
    // like the official code so that e.g. 0.83 gives the same integer.
    o.insert(
        "desiredRetention".into(),
        n.desired_retention.map(|v| (v * 100.0) as u32).into(),
    );
}

fn day_limit_json(limit: Option<DayLimit>) -> Value {
    match limit {
        Some(l) => json!({"limit": l.limit, "today": l.today}),
        None => Value::Null,
    }
}

fn filtered_deck_json(o: &mut JsonObject, f: FilteredDeck) {
    o.insert("resched".into(), f.reschedule.into());
    let terms: Vec<Value> = f
        .search_terms
        .into_iter()
        .map(|t| json!([t.search, t.limit as i32, t.order]))
        .collect();
    o.insert("terms".into(), Value::Array(terms));
    // Unused, but old clients refuse a filtered deck without it.
    o.insert("separate".into(), true.into());
    let delays = if f.delays.is_empty() {
        Value::Null
    } else {
        f32_list(&f.delays)
    };
    o.insert("delays".into(), delays);
    o.insert("previewDelay".into(), f.preview_delay.into());
    o.insert("previewAgainSecs".into(), f.preview_again_secs.into());
    o.insert("previewHardSecs".into(), f.preview_hard_secs.into());
    o.insert("previewGoodSecs".into(), f.preview_good_secs.into());
}

// ------------------------------------------------------------- deck configs

pub(super) const RESERVED_DECKCONF_KEYS: &[&str] = &[
    "id",
    "newSortOrder",
    "replayq",
    "newPerDayMinimum",
    "usn",
    "autoplay",
    "dyn",
    "maxTaken",
    "reviewOrder",
    "buryInterdayLearning",
    "newMix",
    "mod",
    "timer",
    "name",
    "interdayLearningMix",
    "newGatherPriority",
    "fsrsWeights",
    "fsrsParams5",
    "fsrsParams6",
    "desiredRetention",
    "stopTimerOnAnswer",
    "secondsToShowQuestion",
    "secondsToShowAnswer",
    "questionAction",
    "answerAction",
    "waitForAudio",
    "sm2Retention",
    "weightSearch",
    "ignoreRevlogsBeforeDate",
    "easyDaysPercentages",
];

pub(super) const RESERVED_DECKCONF_NEW_KEYS: &[&str] =
    &["order", "delays", "bury", "perDay", "initialFactor", "ints"];

pub(super) const RESERVED_DECKCONF_REV_KEYS: &[&str] =
    &["maxIvl", "hardFactor", "ease4", "ivlFct", "perDay", "bury"];

pub(super) const RESERVED_DECKCONF_LAPSE_KEYS: &[&str] =
    &["leechFails", "mult", "leechAction", "delays", "minInt"];

fn read_deck_configs(conn: &rusqlite::Connection) -> Result<Vec<(i64, JsonObject)>, ObjectsError> {
    let rows = query_rows(
        conn,
        "SELECT id, name, mtime_secs, usn, config FROM deck_config ORDER BY id",
        "deck_config",
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i32>(3)?,
                blob_of(row.get_ref(4)?),
            ))
        },
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, name, mtime, usn, config) in rows {
        let mut config: DeckConfigConfig = decode(&format!("deck config {id}"), "config", config)?;
        clamp_deck_config(&mut config);
        out.push((id, deck_config_json(id, name, mtime, usn, config)));
    }
    Ok(out)
}

/// The official reader replaces out-of-range options with their defaults
/// before producing legacy JSON, so clients never receive such values.
pub(super) fn clamp_deck_config(c: &mut DeckConfigConfig) {
    fn clamp_u32(val: &mut u32, default: u32, min: u32, max: u32) {
        if *val < min || *val > max {
            *val = default;
        }
    }
    fn clamp_f32(val: &mut f32, default: f32, min: f32, max: f32) {
        if val.is_nan() || *val < min || *val > max {
            *val = default;
        }
    }
    clamp_u32(&mut c.new_per_day, 20, 0, 9999);
    clamp_u32(&mut c.reviews_per_day, 200, 0, 9999);
    clamp_u32(&mut c.new_per_day_minimum, 0, 0, 9999);
    clamp_f32(&mut c.initial_ease, 2.5, 1.31, 5.0);
    clamp_f32(&mut c.easy_multiplier, 1.3, 1.0, 5.0);
    clamp_f32(&mut c.hard_multiplier, 1.2, 0.5, 1.3);
    clamp_f32(&mut c.lapse_multiplier, 0.0, 0.0, 1.0);
    clamp_f32(&mut c.interval_multiplier, 1.0, 0.5, 2.0);
    clamp_u32(&mut c.maximum_review_interval, 36_500, 1, 36_500);
    clamp_u32(&mut c.minimum_lapse_interval, 1, 1, 36_500);
    clamp_u32(&mut c.graduating_interval_good, 1, 1, 36_500);
    clamp_u32(&mut c.graduating_interval_easy, 4, 1, 36_500);
    clamp_u32(&mut c.leech_threshold, 8, 1, 9999);
    clamp_u32(&mut c.cap_answer_time_to_secs, 60, 1, 9999);
    clamp_f32(&mut c.desired_retention, 0.9, 0.7, 0.99);
    clamp_f32(&mut c.historical_retention, 0.9, 0.7, 0.97);
}

fn deck_config_json(
    id: i64,
    name: String,
    mtime: i64,
    usn: i32,
    c: DeckConfigConfig,
) -> JsonObject {
    // Unknown keys of the nested `new`/`rev`/`lapse` objects were stored
    // under those names inside the top-level `other`.
    let mut top_other = parse_other(&c.other);
    let new_other = take_nested_other(&mut top_other, "new");
    let rev_other = take_nested_other(&mut top_other, "rev");
    let lapse_other = take_nested_other(&mut top_other, "lapse");

    let mut new = JsonObject::new();
    new.insert("bury".into(), c.bury_new.into());
    new.insert("delays".into(), f32_list(&c.learn_steps));
    // Saturating f32→int cast, computed in f32, as the official code does.
    new.insert(
        "initialFactor".into(),
        ((c.initial_ease * 1000.0) as u16).into(),
    );
    new.insert(
        "ints".into(),
        json!([
            c.graduating_interval_good as u16,
            c.graduating_interval_easy as u16,
            0
        ]),
    );
    // The proto enum is 0 due / 1 random; legacy JSON is 1 due / 0 random,
    // and unknown values read as the proto default (due).
    new.insert(
        "order".into(),
        i32::from(c.new_card_insert_order != 1).into(),
    );
    new.insert("perDay".into(), c.new_per_day.into());
    merge_other(&mut new, new_other, RESERVED_DECKCONF_NEW_KEYS);

    let mut rev = JsonObject::new();
    rev.insert("bury".into(), c.bury_reviews.into());
    rev.insert("ease4".into(), f32_value(c.easy_multiplier));
    rev.insert("ivlFct".into(), f32_value(c.interval_multiplier));
    rev.insert("maxIvl".into(), c.maximum_review_interval.into());
    rev.insert("perDay".into(), c.reviews_per_day.into());
    rev.insert("hardFactor".into(), f32_value(c.hard_multiplier));
    merge_other(&mut rev, rev_other, RESERVED_DECKCONF_REV_KEYS);

    let mut lapse = JsonObject::new();
    lapse.insert("delays".into(), f32_list(&c.relearn_steps));
    lapse.insert("leechAction".into(), i32::from(c.leech_action == 1).into());
    lapse.insert("leechFails".into(), c.leech_threshold.into());
    lapse.insert("minInt".into(), c.minimum_lapse_interval.into());
    lapse.insert("mult".into(), f32_value(c.lapse_multiplier));
    merge_other(&mut lapse, lapse_other, RESERVED_DECKCONF_LAPSE_KEYS);

    let mut o = JsonObject::new();
    o.insert("id".into(), id.into());
    o.insert("mod".into(), mtime.into());
    o.insert("name".into(), name.into());
    o.insert("usn".into(), usn.into());
    o.insert("maxTaken".into(), (c.cap_answer_time_to_secs as i32).into());
    o.insert("autoplay".into(), (!c.disable_autoplay).into());
    o.insert("timer".into(), i32::from(c.show_timer).into());
    o.insert(
        "replayq".into(),
        (!c.skip_question_when_replaying_answer).into(),
    );
    o.insert("new".into(), Value::Object(new));
    o.insert("rev".into(), Value::Object(rev));
    o.insert("lapse".into(), Value::Object(lapse));
    o.insert("dyn".into(), false.into());
    o.insert("newMix".into(), c.new_mix.into());
    o.insert("newPerDayMinimum".into(), c.new_per_day_minimum.into());
    o.insert("interdayLearningMix".into(), c.interday_learning_mix.into());
    o.insert("reviewOrder".into(), c.review_order.into());
    o.insert("newSortOrder".into(), c.new_card_sort_order.into());
    o.insert(
        "newGatherPriority".into(),
        c.new_card_gather_priority.into(),
    );
    o.insert(
        "buryInterdayLearning".into(),
        c.bury_interday_learning.into(),
    );
    o.insert("fsrsWeights".into(), f32_list(&c.fsrs_params_4));
    o.insert("fsrsParams5".into(), f32_list(&c.fsrs_params_5));
    o.insert("fsrsParams6".into(), f32_list(&c.fsrs_params_6));
    o.insert("desiredRetention".into(), f32_value(c.desired_retention));
    o.insert(
        "ignoreRevlogsBeforeDate".into(),
        c.ignore_revlogs_before_date.into(),
    );
    o.insert(
        "easyDaysPercentages".into(),
        f32_list(&c.easy_days_percentages),
    );
    o.insert("stopTimerOnAnswer".into(), c.stop_timer_on_answer.into());
    o.insert(
        "secondsToShowQuestion".into(),
        f32_value(c.seconds_to_show_question),
    );
    o.insert(
        "secondsToShowAnswer".into(),
        f32_value(c.seconds_to_show_answer),
    );
    // Unknown action values fall back to the first variant, as in the
    // official enum mapping.
    let question_action = if c.question_action == 1 { 1 } else { 0 };
    o.insert("questionAction".into(), question_action.into());
    let answer_action = if (1..=4).contains(&c.answer_action) {
        c.answer_action
    } else {
        0
    };
    o.insert("answerAction".into(), answer_action.into());
    o.insert("waitForAudio".into(), c.wait_for_audio.into());
    o.insert("sm2Retention".into(), f32_value(c.historical_retention));
    o.insert("weightSearch".into(), c.param_search.into());
    merge_other(&mut o, top_other, RESERVED_DECKCONF_KEYS);
    o
}

/// Removes `key` from the top-level extras and returns it as the nested
/// object's extras; a value that is not an object carries nothing usable.
fn take_nested_other(top: &mut JsonObject, key: &str) -> JsonObject {
    match top.remove(key) {
        Some(Value::Object(map)) => map,
        _ => JsonObject::new(),
    }
}

// ------------------------------------------------------------ config & tags

fn read_config(conn: &rusqlite::Connection) -> Result<Vec<(String, Value)>, ObjectsError> {
    let rows = query_rows(
        conn,
        "SELECT KEY, val FROM config ORDER BY KEY",
        "config",
        |row| Ok((row.get::<_, String>(0)?, blob_of(row.get_ref(1)?))),
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for (key, val) in rows {
        let bytes = val.ok_or_else(|| ObjectsError::Invalid {
            object: format!("config key {key:?}"),
            problem: "value is not a blob".into(),
        })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|err| ObjectsError::Invalid {
            object: format!("config key {key:?}"),
            problem: format!("value is not JSON: {err}"),
        })?;
        out.push((key, value));
    }
    Ok(out)
}

fn read_tags(conn: &rusqlite::Connection) -> Result<Vec<(String, i32)>, ObjectsError> {
    query_rows(conn, "SELECT tag, usn FROM tags", "tags", |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i32>(1)?))
    })
}

// ------------------------------------------------------------------ helpers

fn query_rows<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    table: &str,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, ObjectsError> {
    let what = format!("reading table {table}");
    let mut stmt = conn
        .prepare(sql)
        .map_err(ObjectsError::sqlite(what.clone()))?;
    let rows = stmt
        .query_map([], map)
        .map_err(ObjectsError::sqlite(what.clone()))?;
    rows.collect::<rusqlite::Result<Vec<T>>>()
        .map_err(ObjectsError::sqlite(what))
}

/// Protobuf and JSON-bytes columns are declared as blobs, but SQLite does not
/// enforce that; a text value carries the same bytes. `None` means NULL or a
/// number, which no writer produces.
fn blob_of(value: ValueRef<'_>) -> Option<Vec<u8>> {
    match value {
        ValueRef::Blob(bytes) | ValueRef::Text(bytes) => Some(bytes.to_vec()),
        _ => None,
    }
}

fn decode<M: Message + Default>(
    object: &str,
    part: &str,
    bytes: Option<Vec<u8>>,
) -> Result<M, ObjectsError> {
    let bytes = bytes.ok_or_else(|| ObjectsError::Invalid {
        object: object.to_owned(),
        problem: format!("{part}: not a blob"),
    })?;
    M::decode(bytes.as_slice()).map_err(|source| ObjectsError::Protobuf {
        object: object.to_owned(),
        part: part.to_owned(),
        source,
    })
}

fn nonzero_id(present: bool, id: i64) -> Value {
    if present {
        id.into()
    } else {
        Value::Null
    }
}

/// The `other` blob is a JSON object of legacy keys the typed fields don't
/// cover. Anything else in it is ignored, as the official reader does.
fn parse_other(bytes: &[u8]) -> JsonObject {
    if bytes.is_empty() {
        return JsonObject::new();
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => map,
        _ => JsonObject::new(),
    }
}

/// Later keys win, matching a JSON reader of the official output where a
/// flattened extra and a typed key could both be present.
fn merge_other(target: &mut JsonObject, other: JsonObject, reserved: &[&str]) {
    for (key, value) in other {
        if !reserved.contains(&key.as_str()) {
            target.insert(key, value);
        }
    }
}

/// The official JSON writer prints an f32 with the fewest digits that read
/// back as the same f32 (0.9, not 0.8999999761581421), and clients parse that
/// text as a double. Going through the shortest decimal form reproduces that
/// double exactly.
pub(super) fn f32_value(x: f32) -> Value {
    if !x.is_finite() {
        // JSON has no NaN/infinity; the official writer emits null.
        return Value::Null;
    }
    let shortest = x.to_string();
    shortest
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn f32_list(xs: &[f32]) -> Value {
    Value::Array(xs.iter().map(|&x| f32_value(x)).collect())
}
