//! The other direction of `schema18`: turns the legacy JSON objects we store (notetypes,
//! decks, deck configs) into the rows and protobuf blobs of a schema-18 collection, as the
//! official upgrade from schema 11 builds them: the same key names and defaults, the same
//! inversions and casts, unknown keys kept in each message's `other` field. Reading the rows
//! back with `schema18` gives the same JSON again, so a file written from them round-trips.
//!
//! Pure conversion: it never touches SQLite and never fails. Objects come from clients and
//! were accepted when they arrived; where one lacks a key the official parser requires, the
//! value the official defaults use is taken, so that a collection can always be written out.

use prost::Message;
use serde_json::Value;

use super::proto::{
    CardRequirement, DayLimit, DeckCommon, DeckConfigConfig, DeckKind, DeckKindContainer,
    FieldConfig, FilteredDeck, NormalDeck, NotetypeConfig, SearchTerm, TemplateConfig,
};
use super::schema18::{
    clamp_deck_config, RESERVED_DECKCONF_KEYS, RESERVED_DECKCONF_LAPSE_KEYS,
    RESERVED_DECKCONF_NEW_KEYS, RESERVED_DECKCONF_REV_KEYS, RESERVED_FIELD_KEYS,
    RESERVED_NOTETYPE_KEYS, RESERVED_TEMPLATE_KEYS,
};
use super::JsonObject;

/// A notetype as the `notetypes`, `fields` and `templates` tables hold it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NotetypeRows {
    pub name: String,
    pub mtime_secs: i64,
    pub config: Vec<u8>,
    /// (name, config) in `ord` order.
    pub fields: Vec<(String, Vec<u8>)>,
    /// (name, config) in `ord` order; legacy JSON has no template mtime or usn (both 0).
    pub templates: Vec<(String, Vec<u8>)>,
}

/// A deck as the `decks` table holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeckRow {
    /// Levels joined by U+001F.
    pub native_name: String,
    pub mtime_secs: i64,
    pub common: Vec<u8>,
    pub kind: Vec<u8>,
}

/// A deck options preset as the `deck_config` table holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeckConfigRow {
    pub name: String,
    pub mtime_secs: i64,
    pub config: Vec<u8>,
}

pub(crate) fn notetype_rows(o: &JsonObject) -> NotetypeRows {
    let f = Fields(o);
    let reqs = o.get("req").and_then(requirements).unwrap_or_default();
    let config = NotetypeConfig {
        kind: i32::from(f.i64("type") == Some(1)),
        sort_field_idx: u32::from(
            f.i64("sortf")
                .and_then(|n| u16::try_from(n).ok())
                .unwrap_or(0),
        ),
        css: f.string("css").unwrap_or_default(),
        target_deck_id_unused: f.i64("did").unwrap_or(0),
        latex_pre: f.string("latexPre").unwrap_or_default(),
        latex_post: f.string("latexPost").unwrap_or_default(),
        latex_svg: f.bool("latexsvg").unwrap_or(false),
        reqs,
        original_stock_kind: f.i32("originalStockKind").unwrap_or(0),
        original_id: f.i64("originalId"),
        other: extras(o, RESERVED_NOTETYPE_KEYS),
    };
    let list = |key: &str| -> Vec<&JsonObject> {
        match o.get(key) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
            _ => Vec::new(),
        }
    };
    NotetypeRows {
        name: f.string("name").unwrap_or_default(),
        mtime_secs: f.i64("mod").unwrap_or(0),
        config: config.encode_to_vec(),
        fields: list("flds").into_iter().map(field_row).collect(),
        templates: list("tmpls").into_iter().map(template_row).collect(),
    }
}

/// `[[card ord, "any"|"all"|"none", [field ords]], …]`; one bad entry voids the list, as the
/// official parser treats the whole key as invalid.
fn requirements(value: &Value) -> Option<Vec<CardRequirement>> {
    value
        .as_array()?
        .iter()
        .map(|entry| {
            let [ord, kind, fields] = entry.as_array()?.as_slice() else {
                return None;
            };
            let kind = match kind.as_str()? {
                "none" => 0,
                "any" => 1,
                "all" => 2,
                _ => return None,
            };
            let field_ords = fields
                .as_array()?
                .iter()
                .map(|n| u16_of(n).map(u32::from))
                .collect::<Option<Vec<_>>>()?;
            Some(CardRequirement {
                card_ord: u32::from(u16_of(ord)?),
                kind,
                field_ords,
            })
        })
        .collect()
}

fn field_row(o: &JsonObject) -> (String, Vec<u8>) {
    let f = Fields(o);
    let config = FieldConfig {
        sticky: f.loose_bool("sticky"),
        rtl: f.loose_bool("rtl"),
        font_name: f.string("font").unwrap_or_else(|| "Arial".into()),
        font_size: u32::from(
            f.i64("size")
                .and_then(|n| u16::try_from(n).ok())
                .unwrap_or(20),
        ),
        description: f.string("description").unwrap_or_default(),
        plain_text: f.bool("plainText").unwrap_or(false),
        collapsed: f.bool("collapsed").unwrap_or(false),
        exclude_from_search: f.bool("excludeFromSearch").unwrap_or(false),
        id: f.i64("id"),
        tag: f.i64("tag").and_then(|n| u32::try_from(n).ok()),
        prevent_deletion: f.bool("preventDeletion").unwrap_or(false),
        other: extras(o, RESERVED_FIELD_KEYS),
    };
    (f.string("name").unwrap_or_default(), config.encode_to_vec())
}

fn template_row(o: &JsonObject) -> (String, Vec<u8>) {
    let f = Fields(o);
    let config = TemplateConfig {
        q_format: f.string("qfmt").unwrap_or_default(),
        a_format: f.string("afmt").unwrap_or_default(),
        q_format_browser: f.string("bqfmt").unwrap_or_default(),
        a_format_browser: f.string("bafmt").unwrap_or_default(),
        target_deck_id: f.i64("did").unwrap_or(0),
        browser_font_name: f.string("bfont").unwrap_or_default(),
        browser_font_size: u32::from(
            f.i64("bsize")
                .and_then(|n| u8::try_from(n).ok())
                .unwrap_or(0),
        ),
        id: f.i64("id"),
        other: extras(o, RESERVED_TEMPLATE_KEYS),
    };
    (f.string("name").unwrap_or_default(), config.encode_to_vec())
}

const DECK_KEYS: &[&str] = &[
    "id",
    "mod",
    "name",
    "usn",
    "lrnToday",
    "revToday",
    "newToday",
    "timeToday",
    "collapsed",
    "browserCollapsed",
    "desc",
    "md",
    "dyn",
    // Obsolete; the official parser drops it.
    "return",
];

const NORMAL_DECK_KEYS: &[&str] = &[
    "conf",
    "extendNew",
    "extendRev",
    "reviewLimit",
    "newLimit",
    "reviewLimitToday",
    "newLimitToday",
    "desiredRetention",
];

const FILTERED_DECK_KEYS: &[&str] = &[
    "resched",
    "terms",
    "separate",
    "delays",
    "previewDelay",
    "previewAgainSecs",
    "previewHardSecs",
    "previewGoodSecs",
];

pub(crate) fn deck_row(o: &JsonObject) -> DeckRow {
    let f = Fields(o);
    let filtered = match o.get("dyn") {
        Some(Value::Bool(b)) => *b,
        Some(n) => n.as_i64() == Some(1),
        None => false,
    };
    let kind_keys = if filtered {
        FILTERED_DECK_KEYS
    } else {
        NORMAL_DECK_KEYS
    };
    let known: Vec<&str> = DECK_KEYS.iter().chain(kind_keys).copied().collect();
    let kind = if filtered {
        DeckKind::Filtered(filtered_deck(&f))
    } else {
        DeckKind::Normal(normal_deck(&f))
    };
    DeckRow {
        native_name: f.string("name").unwrap_or_default().replace("::", "\x1f"),
        mtime_secs: f.i64("mod").unwrap_or(0),
        common: deck_common(&f, extras(o, &known)).encode_to_vec(),
        kind: DeckKindContainer { kind: Some(kind) }.encode_to_vec(),
    }
}

/// Schema 18 keeps one "last studied" day for the four daily counters: the latest of the
/// time, new and review days; a counter from an earlier day is reset, except the time one.
fn deck_common(f: &Fields<'_>, other: Vec<u8>) -> DeckCommon {
    let today = |key: &str| -> (i64, i64) {
        // `[day, amount]`, read from the end as the official parser does.
        let mut items = match f.0.get(key) {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        let amount = items.pop().and_then(|v| v.as_i64()).unwrap_or(0);
        let day = items.pop().and_then(|v| v.as_i64()).unwrap_or(0);
        (day as i32 as i64, amount as i32 as i64)
    };
    let (lrn, rev, new, time) = (
        today("lrnToday"),
        today("revToday"),
        today("newToday"),
        today("timeToday"),
    );
    let day = time.0.max(new.0).max(rev.0);
    let amount = |(d, n): (i64, i64)| if d == day { n as i32 } else { 0 };
    DeckCommon {
        study_collapsed: f.bool("collapsed").unwrap_or(false),
        browser_collapsed: f.bool("browserCollapsed").unwrap_or(false),
        last_day_studied: day as u32,
        new_studied: amount(new),
        review_studied: amount(rev),
        learning_studied: amount(lrn),
        milliseconds_studied: time.1 as i32,
        other,
    }
}

fn normal_deck(f: &Fields<'_>) -> NormalDeck {
    let day_limit = |key: &str| -> Option<DayLimit> {
        let o = f.0.get(key)?.as_object()?;
        let field = |k: &str| {
            o.get(k)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
        };
        Some(DayLimit {
            limit: field("limit").unwrap_or(0),
            today: field("today").unwrap_or(0),
        })
    };
    NormalDeck {
        config_id: f.i64("conf").unwrap_or(1),
        extend_new: f.i32("extendNew").unwrap_or(0).max(0) as u32,
        extend_review: f.i32("extendRev").unwrap_or(0).max(0) as u32,
        description: f.string("desc").unwrap_or_default(),
        markdown_description: f.bool("md").unwrap_or(false),
        review_limit: f.u32("reviewLimit"),
        new_limit: f.u32("newLimit"),
        review_limit_today: day_limit("reviewLimitToday"),
        new_limit_today: day_limit("newLimitToday"),
        desired_retention: f.u32("desiredRetention").map(retention_fraction),
    }
}

/// A whole percent as the fraction the proto stores, chosen so that the official reader's
/// `(fraction * 100) as u32` gives the percent back (a plain division does not for 53 and 59).
fn retention_fraction(percent: u32) -> f32 {
    let fraction = percent as f32 / 100.0;
    if (fraction * 100.0) as u32 == percent {
        fraction
    } else {
        f32::from_bits(fraction.to_bits() + 1)
    }
}

fn filtered_deck(f: &Fields<'_>) -> FilteredDeck {
    let search_terms = match f.0.get("terms") {
        Some(Value::Array(terms)) => terms
            .iter()
            .filter_map(|term| {
                let [search, limit, order] = term.as_array()?.as_slice() else {
                    return None;
                };
                Some(SearchTerm {
                    search: search.as_str()?.to_string(),
                    limit: number_or_text(limit).unwrap_or(0).max(0) as u32,
                    order: order.as_i64().unwrap_or(0) as i32,
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    FilteredDeck {
        reschedule: f.loose_bool("resched"),
        search_terms,
        delays: f.f32_list("delays").unwrap_or_default(),
        preview_delay: f.u32("previewDelay").unwrap_or(0),
        preview_hard_secs: f.u32("previewHardSecs").unwrap_or(0),
        preview_good_secs: f.u32("previewGoodSecs").unwrap_or(0),
        preview_again_secs: f.u32("previewAgainSecs").unwrap_or(0),
    }
}

pub(crate) fn deck_config_row(o: &JsonObject) -> DeckConfigRow {
    let f = Fields(o);
    // Each of `new`, `rev` and `lapse` is taken whole or, when a key it needs is missing or
    // malformed, replaced by the defaults whole, as the official parser does.
    let section = |key: &str, required: &[&str]| -> Option<&JsonObject> {
        let s = o.get(key)?.as_object()?;
        required.iter().all(|k| s.contains_key(*k)).then_some(s)
    };
    let new = section(
        "new",
        &["delays", "initialFactor", "ints", "order", "perDay"],
    )
    .filter(|s| {
        Fields(s)
            .i64("initialFactor")
            .is_some_and(|n| u16::try_from(n).is_ok())
    });
    let rev = section("rev", &["ease4", "ivlFct", "maxIvl", "perDay"]).filter(|s| {
        let r = Fields(s);
        r.f32("ease4").is_some() && r.f32("ivlFct").is_some() && r.u32("maxIvl").is_some()
    });
    let lapse = section(
        "lapse",
        &["delays", "leechAction", "leechFails", "minInt", "mult"],
    )
    .filter(|s| {
        let l = Fields(s);
        l.u32("leechFails").is_some() && l.u32("minInt").is_some() && l.f32("mult").is_some()
    });

    let mut other = JsonObject::new();
    for (key, s, known) in [
        ("new", new, RESERVED_DECKCONF_NEW_KEYS),
        ("rev", rev, RESERVED_DECKCONF_REV_KEYS),
        ("lapse", lapse, RESERVED_DECKCONF_LAPSE_KEYS),
    ] {
        let extra: JsonObject = s
            .into_iter()
            .flatten()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !extra.is_empty() {
            other.insert(key.into(), Value::Object(extra));
        }
    }
    for (key, value) in o {
        let key_str = key.as_str();
        let typed =
            RESERVED_DECKCONF_KEYS.contains(&key_str) || ["new", "rev", "lapse"].contains(&key_str);
        if !typed {
            other.insert(key.clone(), value.clone());
        }
    }

    let (n, r, l) = (new.map(Fields), rev.map(Fields), lapse.map(Fields));
    let ints = n
        .as_ref()
        .and_then(|n| n.0.get("ints"))
        .and_then(Value::as_array)
        .and_then(|ints| {
            let good = u16_of(ints.first()?)?;
            let easy = u16_of(ints.get(1)?)?;
            Some((good, easy))
        })
        .unwrap_or((1, 4));
    let mut config = DeckConfigConfig {
        learn_steps: match &n {
            Some(n) => n.f32_list("delays").unwrap_or_default(),
            None => vec![1.0, 10.0],
        },
        relearn_steps: match &l {
            Some(l) => l.f32_list("delays").unwrap_or_default(),
            None => vec![10.0],
        },
        fsrs_params_4: f.f32_list("fsrsWeights").unwrap_or_default(),
        easy_days_percentages: f.f32_list("easyDaysPercentages").unwrap_or_default(),
        fsrs_params_5: f.f32_list("fsrsParams5").unwrap_or_default(),
        fsrs_params_6: f.f32_list("fsrsParams6").unwrap_or_default(),
        new_per_day: n.as_ref().map_or(20, |n| n.u32("perDay").unwrap_or(0)),
        reviews_per_day: r.as_ref().map_or(200, |r| r.u32("perDay").unwrap_or(0)),
        initial_ease: n
            .as_ref()
            .and_then(|n| n.i64("initialFactor"))
            .map_or(2.5, |thousandths| thousandths as f32 / 1000.0),
        easy_multiplier: r.as_ref().and_then(|r| r.f32("ease4")).unwrap_or(1.3),
        hard_multiplier: r
            .as_ref()
            .map_or(1.2, |r| r.f32("hardFactor").unwrap_or(1.2)),
        lapse_multiplier: l.as_ref().and_then(|l| l.f32("mult")).unwrap_or(0.0),
        interval_multiplier: r.as_ref().and_then(|r| r.f32("ivlFct")).unwrap_or(1.0),
        maximum_review_interval: r.as_ref().and_then(|r| r.u32("maxIvl")).unwrap_or(36_500),
        minimum_lapse_interval: l.as_ref().and_then(|l| l.u32("minInt")).unwrap_or(1),
        graduating_interval_good: u32::from(ints.0),
        graduating_interval_easy: u32::from(ints.1),
        // Legacy JSON says 1 for "due", 0 for "random"; the proto enum is the other way.
        new_card_insert_order: match n.as_ref().and_then(|n| n.i64("order")) {
            Some(0) => 1,
            _ => 0,
        },
        leech_action: match l.as_ref().and_then(|l| l.i64("leechAction")) {
            Some(0) => 0,
            _ => 1,
        },
        leech_threshold: l.as_ref().and_then(|l| l.u32("leechFails")).unwrap_or(8),
        disable_autoplay: !f.bool("autoplay").unwrap_or(true),
        cap_answer_time_to_secs: f.i32("maxTaken").unwrap_or(60).max(0) as u32,
        show_timer: f.i64("timer").is_some_and(|t| (1..=255).contains(&t)),
        skip_question_when_replaying_answer: !f.bool("replayq").unwrap_or(false),
        bury_new: n.as_ref().is_some_and(|n| n.bool("bury").unwrap_or(false)),
        bury_reviews: r.as_ref().is_some_and(|r| r.bool("bury").unwrap_or(false)),
        bury_interday_learning: f.bool("buryInterdayLearning").unwrap_or(false),
        new_mix: f.i32("newMix").unwrap_or(0),
        interday_learning_mix: f.i32("interdayLearningMix").unwrap_or(0),
        new_card_sort_order: f.i32("newSortOrder").unwrap_or(0),
        review_order: f.i32("reviewOrder").unwrap_or(0),
        new_card_gather_priority: f.i32("newGatherPriority").unwrap_or(0),
        new_per_day_minimum: f.u32("newPerDayMinimum").unwrap_or(0),
        question_action: i32::from(f.i64("questionAction") == Some(1)),
        desired_retention: f.f32("desiredRetention").unwrap_or(0.0),
        stop_timer_on_answer: f.bool("stopTimerOnAnswer").unwrap_or(false),
        historical_retention: f.f32("sm2Retention").unwrap_or(0.0),
        seconds_to_show_question: f.f32("secondsToShowQuestion").unwrap_or(0.0),
        seconds_to_show_answer: f.f32("secondsToShowAnswer").unwrap_or(0.0),
        answer_action: f
            .i32("answerAction")
            .filter(|a| (0..=4).contains(a))
            .unwrap_or(0),
        wait_for_audio: f.bool("waitForAudio").unwrap_or(true),
        param_search: f.string("weightSearch").unwrap_or_default(),
        ignore_revlogs_before_date: f.string("ignoreRevlogsBeforeDate").unwrap_or_default(),
        other: if other.is_empty() {
            Vec::new()
        } else {
            json_bytes(&other)
        },
    };
    // The official reader clamps these on every load; storing them clamped makes the file
    // read back the same way by either reader.
    clamp_deck_config(&mut config);
    DeckConfigRow {
        name: f.string("name").unwrap_or_default(),
        mtime_secs: f.i64("mod").unwrap_or(0),
        config: config.encode_to_vec(),
    }
}

/// The keys of `o` not in `known`, as the JSON object the `other` field holds; empty when
/// there are none. Keys come out sorted, so the bytes are the same on every run.
fn extras(o: &JsonObject, known: &[&str]) -> Vec<u8> {
    let rest: JsonObject = o
        .iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if rest.is_empty() {
        Vec::new()
    } else {
        json_bytes(&rest)
    }
}

fn json_bytes(o: &JsonObject) -> Vec<u8> {
    Value::Object(o.clone()).to_string().into_bytes()
}

fn u16_of(value: &Value) -> Option<u16> {
    value.as_u64().and_then(|n| u16::try_from(n).ok())
}

/// Ids and a few counters may arrive as decimal strings from old clients.
fn number_or_text(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Typed, lenient reads of one JSON object's keys: `None` when a key is missing or of
/// another type.
struct Fields<'a>(&'a JsonObject);

impl Fields<'_> {
    fn i64(&self, key: &str) -> Option<i64> {
        self.0.get(key).and_then(number_or_text)
    }

    fn i32(&self, key: &str) -> Option<i32> {
        self.i64(key).and_then(|n| i32::try_from(n).ok())
    }

    fn u32(&self, key: &str) -> Option<u32> {
        self.i64(key).and_then(|n| u32::try_from(n).ok())
    }

    fn f32(&self, key: &str) -> Option<f32> {
        self.0.get(key)?.as_f64().map(|f| f as f32)
    }

    fn bool(&self, key: &str) -> Option<bool> {
        self.0.get(key)?.as_bool()
    }

    /// A flag old clients wrote as a number or a string.
    fn loose_bool(&self, key: &str) -> bool {
        match self.0.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64() == Some(1.0),
            Some(Value::String(s)) => {
                matches!(s.trim().to_ascii_lowercase().as_str(), "1" | "true")
            }
            _ => false,
        }
    }

    fn string(&self, key: &str) -> Option<String> {
        self.0.get(key)?.as_str().map(str::to_string)
    }

    fn f32_list(&self, key: &str) -> Option<Vec<f32>> {
        self.0
            .get(key)?
            .as_array()?
            .iter()
            .map(|v| v.as_f64().map(|f| f as f32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_whole_percent_survives_the_official_reader() {
        for percent in 0..=100 {
            let fraction = retention_fraction(percent);
            assert_eq!((fraction * 100.0) as u32, percent, "{percent}");
        }
    }
}
