//! Hand-written protobuf messages for the blobs a schema-18 collection stores
//! (`notetypes.config`, `fields.config`, `templates.config`, `decks.common`,
//! `decks.kind`, `deck_config.config`), with the field numbers documented in
//! the collection spec (section 3.3).
//!
//! This module only describes wire layouts; it must never interpret values
//! (inversions, clamping, legacy key names live in `schema18`). Enum-typed
//! proto fields are declared as plain `int32` so that unknown enum values
//! survive decoding unchanged and the mapping code decides what they mean.
//! Fields the legacy JSON has no place for are not declared: prost skips
//! unknown field numbers, which is the same loss the official downgrade has.

/// `Notetype.Config`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct NotetypeConfig {
    #[prost(int32, tag = "1")]
    pub kind: i32,
    #[prost(uint32, tag = "2")]
    pub sort_field_idx: u32,
    #[prost(string, tag = "3")]
    pub css: String,
    #[prost(int64, tag = "4")]
    pub target_deck_id_unused: i64,
    #[prost(string, tag = "5")]
    pub latex_pre: String,
    #[prost(string, tag = "6")]
    pub latex_post: String,
    #[prost(bool, tag = "7")]
    pub latex_svg: bool,
    #[prost(message, repeated, tag = "8")]
    pub reqs: Vec<CardRequirement>,
    #[prost(int32, tag = "9")]
    pub original_stock_kind: i32,
    #[prost(int64, optional, tag = "10")]
    pub original_id: Option<i64>,
    #[prost(bytes = "vec", tag = "255")]
    pub other: Vec<u8>,
}

/// `Notetype.Config.CardRequirement`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CardRequirement {
    #[prost(uint32, tag = "1")]
    pub card_ord: u32,
    #[prost(int32, tag = "2")]
    pub kind: i32,
    #[prost(uint32, repeated, tag = "3")]
    pub field_ords: Vec<u32>,
}

/// `Notetype.Field.Config`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct FieldConfig {
    #[prost(bool, tag = "1")]
    pub sticky: bool,
    #[prost(bool, tag = "2")]
    pub rtl: bool,
    #[prost(string, tag = "3")]
    pub font_name: String,
    #[prost(uint32, tag = "4")]
    pub font_size: u32,
    #[prost(string, tag = "5")]
    pub description: String,
    #[prost(bool, tag = "6")]
    pub plain_text: bool,
    #[prost(bool, tag = "7")]
    pub collapsed: bool,
    #[prost(bool, tag = "8")]
    pub exclude_from_search: bool,
    #[prost(int64, optional, tag = "9")]
    pub id: Option<i64>,
    #[prost(uint32, optional, tag = "10")]
    pub tag: Option<u32>,
    #[prost(bool, tag = "11")]
    pub prevent_deletion: bool,
    #[prost(bytes = "vec", tag = "255")]
    pub other: Vec<u8>,
}

/// `Notetype.Template.Config`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TemplateConfig {
    #[prost(string, tag = "1")]
    pub q_format: String,
    #[prost(string, tag = "2")]
    pub a_format: String,
    #[prost(string, tag = "3")]
    pub q_format_browser: String,
    #[prost(string, tag = "4")]
    pub a_format_browser: String,
    #[prost(int64, tag = "5")]
    pub target_deck_id: i64,
    #[prost(string, tag = "6")]
    pub browser_font_name: String,
    #[prost(uint32, tag = "7")]
    pub browser_font_size: u32,
    #[prost(int64, optional, tag = "8")]
    pub id: Option<i64>,
    #[prost(bytes = "vec", tag = "255")]
    pub other: Vec<u8>,
}

/// `Deck.Common`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeckCommon {
    #[prost(bool, tag = "1")]
    pub study_collapsed: bool,
    #[prost(bool, tag = "2")]
    pub browser_collapsed: bool,
    #[prost(uint32, tag = "3")]
    pub last_day_studied: u32,
    #[prost(int32, tag = "4")]
    pub new_studied: i32,
    #[prost(int32, tag = "5")]
    pub review_studied: i32,
    #[prost(int32, tag = "6")]
    pub learning_studied: i32,
    #[prost(int32, tag = "7")]
    pub milliseconds_studied: i32,
    #[prost(bytes = "vec", tag = "255")]
    pub other: Vec<u8>,
}

/// `Deck.KindContainer`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeckKindContainer {
    #[prost(oneof = "DeckKind", tags = "1, 2")]
    pub kind: Option<DeckKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum DeckKind {
    #[prost(message, tag = "1")]
    Normal(NormalDeck),
    #[prost(message, tag = "2")]
    Filtered(FilteredDeck),
}

/// `Deck.Normal`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct NormalDeck {
    #[prost(int64, tag = "1")]
    pub config_id: i64,
    #[prost(uint32, tag = "2")]
    pub extend_new: u32,
    #[prost(uint32, tag = "3")]
    pub extend_review: u32,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(bool, tag = "5")]
    pub markdown_description: bool,
    #[prost(uint32, optional, tag = "6")]
    pub review_limit: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pub new_limit: Option<u32>,
    #[prost(message, optional, tag = "8")]
    pub review_limit_today: Option<DayLimit>,
    #[prost(message, optional, tag = "9")]
    pub new_limit_today: Option<DayLimit>,
    #[prost(float, optional, tag = "10")]
    pub desired_retention: Option<f32>,
}

/// `Deck.Normal.DayLimit`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DayLimit {
    #[prost(uint32, tag = "1")]
    pub limit: u32,
    #[prost(uint32, tag = "2")]
    pub today: u32,
}

/// `Deck.Filtered`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct FilteredDeck {
    #[prost(bool, tag = "1")]
    pub reschedule: bool,
    #[prost(message, repeated, tag = "2")]
    pub search_terms: Vec<SearchTerm>,
    #[prost(float, repeated, tag = "3")]
    pub delays: Vec<f32>,
    #[prost(uint32, tag = "4")]
    pub preview_delay: u32,
    #[prost(uint32, tag = "5")]
    pub preview_hard_secs: u32,
    #[prost(uint32, tag = "6")]
    pub preview_good_secs: u32,
    #[prost(uint32, tag = "7")]
    pub preview_again_secs: u32,
}

/// `Deck.Filtered.SearchTerm`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SearchTerm {
    #[prost(string, tag = "1")]
    pub search: String,
    #[prost(uint32, tag = "2")]
    pub limit: u32,
    #[prost(int32, tag = "3")]
    pub order: i32,
}

/// `DeckConfig.Config`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DeckConfigConfig {
    #[prost(float, repeated, tag = "1")]
    pub learn_steps: Vec<f32>,
    #[prost(float, repeated, tag = "2")]
    pub relearn_steps: Vec<f32>,
    #[prost(float, repeated, tag = "3")]
    pub fsrs_params_4: Vec<f32>,
    #[prost(float, repeated, tag = "4")]
    pub easy_days_percentages: Vec<f32>,
    #[prost(float, repeated, tag = "5")]
    pub fsrs_params_5: Vec<f32>,
    #[prost(float, repeated, tag = "6")]
    pub fsrs_params_6: Vec<f32>,
    #[prost(uint32, tag = "9")]
    pub new_per_day: u32,
    #[prost(uint32, tag = "10")]
    pub reviews_per_day: u32,
    #[prost(float, tag = "11")]
    pub initial_ease: f32,
    #[prost(float, tag = "12")]
    pub easy_multiplier: f32,
    #[prost(float, tag = "13")]
    pub hard_multiplier: f32,
    #[prost(float, tag = "14")]
    pub lapse_multiplier: f32,
    #[prost(float, tag = "15")]
    pub interval_multiplier: f32,
    #[prost(uint32, tag = "16")]
    pub maximum_review_interval: u32,
    #[prost(uint32, tag = "17")]
    pub minimum_lapse_interval: u32,
    #[prost(uint32, tag = "18")]
    pub graduating_interval_good: u32,
    #[prost(uint32, tag = "19")]
    pub graduating_interval_easy: u32,
    #[prost(int32, tag = "20")]
    pub new_card_insert_order: i32,
    #[prost(int32, tag = "21")]
    pub leech_action: i32,
    #[prost(uint32, tag = "22")]
    pub leech_threshold: u32,
    #[prost(bool, tag = "23")]
    pub disable_autoplay: bool,
    #[prost(uint32, tag = "24")]
    pub cap_answer_time_to_secs: u32,
    #[prost(bool, tag = "25")]
    pub show_timer: bool,
    #[prost(bool, tag = "26")]
    pub skip_question_when_replaying_answer: bool,
    #[prost(bool, tag = "27")]
    pub bury_new: bool,
    #[prost(bool, tag = "28")]
    pub bury_reviews: bool,
    #[prost(bool, tag = "29")]
    pub bury_interday_learning: bool,
    #[prost(int32, tag = "30")]
    pub new_mix: i32,
    #[prost(int32, tag = "31")]
    pub interday_learning_mix: i32,
    #[prost(int32, tag = "32")]
    pub new_card_sort_order: i32,
    #[prost(int32, tag = "33")]
    pub review_order: i32,
    #[prost(int32, tag = "34")]
    pub new_card_gather_priority: i32,
    #[prost(uint32, tag = "35")]
    pub new_per_day_minimum: u32,
    #[prost(int32, tag = "36")]
    pub question_action: i32,
    #[prost(float, tag = "37")]
    pub desired_retention: f32,
    #[prost(bool, tag = "38")]
    pub stop_timer_on_answer: bool,
    #[prost(float, tag = "40")]
    pub historical_retention: f32,
    #[prost(float, tag = "41")]
    pub seconds_to_show_question: f32,
    #[prost(float, tag = "42")]
    pub seconds_to_show_answer: f32,
    #[prost(int32, tag = "43")]
    pub answer_action: i32,
    #[prost(bool, tag = "44")]
    pub wait_for_audio: bool,
    #[prost(string, tag = "45")]
    pub param_search: String,
    #[prost(string, tag = "46")]
    pub ignore_revlogs_before_date: String,
    #[prost(bytes = "vec", tag = "255")]
    pub other: Vec<u8>,
}
