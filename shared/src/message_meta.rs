//! The typed metadata of a message: one variant per kind of message the system writes (an
//! answer, a clarifying question, a status change, an operator's reply, an action's result, an
//! error notice), stored in `messages.metadata` and sent as the API's `metadata` field.
//!
//! This module is the only Rust code that knows the keys: the widget and the console read this
//! shape (documented in the OpenAPI document), and SQL that looks inside `metadata` takes its keys
//! from the constants below. Renaming a key is a change of the wire format and of stored rows.
//!
//! The JSON is an object tagged by `kind`. Rows written before the tag existed are read as
//! follows, so every stored row still deserialises:
//! - `{}` (user messages: nothing is stored) is [`MessageMeta::Empty`];
//! - an object without `kind` gets its kind from its shape (`decision` `answer` or `clarify`, an
//!   `operator` object), as those were written before every kind was tagged;
//! - anything that still matches no variant is kept as it is stored in [`MessageMeta::Other`]
//!   and written back unchanged, rather than failing the whole read.
//!
//! What the conversation's owner may see is decided here too: [`MessageMeta::user_view`] drops
//! the fields meant for operators.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::{
    ActionRunId, ConversationMode, ConversationStatus, DecisionKind, Engine, EscalationReason, OperatorChannel,
};

/// The tag naming a message's kind.
pub const KIND: &str = "kind";
/// The mode a status notice switched the conversation to (`ai`, `human`).
pub const MODE: &str = "mode";
/// Why the offline engine decided in the model's place; set only then.
pub const FALLBACK: &str = "fallback";
/// When an operator last edited their reply.
pub const EDITED_AT: &str = "edited_at";
/// The operators' summary of the problem in a hand-over (hidden from the user).
pub const SUMMARY: &str = "summary";
const DECISION: &str = "decision";
const OPERATOR: &str = "operator";

/// A message's metadata. `Empty` and `Other` are not written as such: they are what stored rows
/// without a known kind read as (see the module comment).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", remote = "Self")]
pub enum MessageMeta {
    /// An answer to the user's message.
    Answer(AnswerMeta),
    /// A question back to the user, with the topics they may mean.
    Clarify(ClarifyMeta),
    /// The conversation changed status or mode (a hand-over to a person, back to the AI, closed).
    Status(StatusMeta),
    /// A reply written by an operator.
    Operator(OperatorMeta),
    /// The result of an action run for the user.
    ActionResult(ActionResultMeta),
    /// The user's message (or an action run) could not be processed.
    Error(ErrorMeta),
    /// No metadata: `{}`, as user messages have.
    #[default]
    #[serde(skip)]
    Empty,
    /// A stored object of no known kind, kept as it is.
    #[serde(skip)]
    Other(Value),
}

/// What a decision was made with. The optional fields are written as `null` when unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DecisionInfo {
    pub engine: Engine,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub prompt_version: Option<String>,
    /// Why the offline engine decided although a model is configured.
    #[serde(default)]
    pub fallback: Option<String>,
    /// How the knowledge was searched for the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalInfo>,
    /// How the model was asked to return its decision (`tools`, `json_schema`, `json_object`),
    /// when a model was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_format: Option<String>,
}

/// How the knowledge was searched: with the vector ranking or lexically, and if lexically
/// although vectors exist, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetrievalInfo {
    /// `hybrid` or `lexical`.
    pub mode: String,
    /// The embedding failure the search fell back from: `timeout`, `circuit_open`,
    /// `dimensions`, `http_error`, `transport`, `invalid`, `rate_limited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

impl RetrievalInfo {
    pub fn of(result: &crate::knowledge::SearchResult, fallback: Option<&str>) -> Self {
        Self { mode: if result.semantic { "hybrid" } else { "lexical" }.into(), fallback: fallback.map(str::to_owned) }
    }
}

impl DecisionInfo {
    /// Decided by the offline engine; `fallback` says why when a model was configured.
    pub fn offline(fallback: Option<String>) -> Self {
        Self {
            engine: Engine::Offline,
            model: None,
            prompt_version: None,
            fallback,
            retrieval: None,
            decision_format: None,
        }
    }

    /// Decided without any engine: by the user's button.
    pub fn button() -> Self {
        Self {
            engine: Engine::Button,
            model: None,
            prompt_version: None,
            fallback: None,
            retrieval: None,
            decision_format: None,
        }
    }

    /// Decided by the language model `model` with the prompt `prompt_version`.
    pub fn llm(model: String, prompt_version: String) -> Self {
        Self {
            engine: Engine::Llm,
            model: Some(model),
            prompt_version: Some(prompt_version),
            fallback: None,
            retrieval: None,
            decision_format: None,
        }
    }

    /// The same, noting the decision format the model was asked to use.
    pub fn with_format(mut self, format: &str) -> Self {
        self.decision_format = Some(format.to_owned());
        self
    }
}

/// A document an answer is based on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Source {
    pub chunk_id: String,
    pub path: String,
    pub title: String,
    pub heading: String,
    pub score: f32,
    pub coverage: f32,
    /// Cosine similarity to the question, when the vector ranking found the passage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<f32>,
}

impl From<&crate::knowledge::Hit> for Source {
    fn from(hit: &crate::knowledge::Hit) -> Self {
        Self {
            chunk_id: hit.chunk.id.clone(),
            path: hit.chunk.doc_path.clone(),
            title: hit.chunk.doc_title.clone(),
            heading: hit.chunk.heading.clone(),
            score: hit.score,
            coverage: hit.coverage,
            vector: hit.vector,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnswerMeta {
    /// Always `answer`.
    pub decision: DecisionKind,
    #[serde(flatten)]
    pub info: DecisionInfo,
    #[serde(default)]
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClarifyMeta {
    /// Always `clarify`.
    pub decision: DecisionKind,
    #[serde(flatten)]
    pub info: DecisionInfo,
    /// The topics offered as choices.
    #[serde(default)]
    pub suggestions: Vec<Source>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusMeta {
    /// The conversation's status from this message on.
    pub status: ConversationStatus,
    /// The conversation's mode from this message on.
    pub mode: ConversationMode,
    /// Set when this notice hands the conversation to a person.
    #[serde(flatten)]
    #[schema(schema_with = optional_handover)]
    pub handover: Option<Handover>,
}

/// The schema of [`StatusMeta::handover`]: the hand-over's fields beside `status` and `mode`, or
/// none of them (a flattened `Option` is never `null`, which is what the derive would say).
fn optional_handover() -> utoipa::openapi::Schema {
    use utoipa::openapi::{ObjectBuilder, Ref, schema::AnyOfBuilder};
    AnyOfBuilder::new()
        .item(Ref::from_schema_name("Handover"))
        .item(ObjectBuilder::new().description(Some("No hand-over: only `status` and `mode`")))
        .build()
        .into()
}

/// Why and by what a conversation was handed to a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Handover {
    /// Always `escalate`.
    pub decision: DecisionKind,
    pub reason: EscalationReason,
    /// The problem in a few words, for operators only: not in the user's view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(flatten)]
    pub info: DecisionInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorMeta {
    pub operator: OperatorSignature,
    /// When the operator last edited the reply (set by [`crate::db::messages::edit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
}

/// Who replied, as the user sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorSignature {
    /// The first name shown next to the reply.
    pub name: String,
    pub via: OperatorChannel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActionResultMeta {
    /// Always `action`.
    pub decision: DecisionKind,
    /// `action` when the text is the action's own, `llm` when the model worded it.
    pub engine: Engine,
    /// The action's name.
    pub action: String,
    pub action_run_id: ActionRunId,
    pub succeeded: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorMeta {
    /// The action run that failed, when it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_run_id: Option<ActionRunId>,
}

impl MessageMeta {
    pub fn answer(info: DecisionInfo, sources: Vec<Source>) -> Self {
        Self::Answer(AnswerMeta { decision: DecisionKind::Answer, info, sources })
    }

    pub fn clarify(info: DecisionInfo, suggestions: Vec<Source>) -> Self {
        Self::Clarify(ClarifyMeta { decision: DecisionKind::Clarify, info, suggestions })
    }

    /// A status change that is not a hand-over (closed, back to the AI).
    pub fn status(status: ConversationStatus, mode: ConversationMode) -> Self {
        Self::Status(StatusMeta { status, mode, handover: None })
    }

    /// The conversation, still open, goes to a person.
    pub fn handover(reason: EscalationReason, summary: Option<String>, info: DecisionInfo) -> Self {
        Self::Status(StatusMeta {
            status: ConversationStatus::Open,
            mode: ConversationMode::Human,
            handover: Some(Handover { decision: DecisionKind::Escalate, reason, summary, info }),
        })
    }

    pub fn operator(name: impl Into<String>, via: OperatorChannel) -> Self {
        Self::Operator(OperatorMeta { operator: OperatorSignature { name: name.into(), via }, edited_at: None })
    }

    pub fn action_result(
        engine: Engine,
        action: impl Into<String>,
        action_run_id: ActionRunId,
        succeeded: bool,
    ) -> Self {
        Self::ActionResult(ActionResultMeta {
            decision: DecisionKind::Action,
            engine,
            action: action.into(),
            action_run_id,
            succeeded,
        })
    }

    pub fn error(action_run_id: Option<ActionRunId>) -> Self {
        Self::Error(ErrorMeta { action_run_id })
    }

    /// Whether this is a status notice (sent as a `status` event on the stream).
    pub fn is_status(&self) -> bool {
        matches!(self, Self::Status(_))
    }

    /// Whether this message asked the user to clarify.
    pub fn is_clarify(&self) -> bool {
        matches!(self, Self::Clarify(_))
    }

    /// The hand-over this notice made, if it made one.
    pub fn as_handover(&self) -> Option<&Handover> {
        match self {
            Self::Status(StatusMeta { handover, .. }) => handover.as_ref(),
            _ => None,
        }
    }

    /// The metadata as the conversation's owner sees it: without the fields meant for
    /// operators (a hand-over's summary).
    pub fn user_view(self) -> Self {
        match self {
            Self::Status(mut status) => {
                if let Some(handover) = &mut status.handover {
                    handover.summary = None;
                }
                Self::Status(status)
            }
            Self::Other(Value::Object(mut stored)) => {
                stored.remove(SUMMARY);
                Self::Other(Value::Object(stored))
            }
            other => other,
        }
    }

    /// The kind, for rows stored before every kind was tagged (see the module comment).
    fn legacy_kind(stored: &serde_json::Map<String, Value>) -> Option<&'static str> {
        match stored.get(DECISION).and_then(Value::as_str) {
            Some("answer") => Some("answer"),
            Some("clarify") => Some("clarify"),
            _ if stored.get(OPERATOR).is_some_and(Value::is_object) => Some("operator"),
            _ => None,
        }
    }
}

impl Serialize for MessageMeta {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Empty => serde_json::Map::new().serialize(serializer),
            Self::Other(stored) => stored.serialize(serializer),
            tagged => MessageMeta::serialize(tagged, serializer),
        }
    }
}

impl<'de> Deserialize<'de> for MessageMeta {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut stored = match Value::deserialize(deserializer)? {
            Value::Object(stored) => stored,
            other => return Ok(Self::Other(other)),
        };
        if stored.is_empty() {
            return Ok(Self::Empty);
        }
        let guessed = match Self::legacy_kind(&stored) {
            Some(kind) if !stored.contains_key(KIND) => {
                stored.insert(KIND.to_owned(), kind.into());
                true
            }
            _ => false,
        };
        let value = Value::Object(stored);
        Ok(MessageMeta::deserialize(&value).unwrap_or_else(|_| {
            // Not a known kind: keep the row as stored, without the kind we guessed.
            let Value::Object(mut stored) = value else { unreachable!("built as an object") };
            if guessed {
                stored.remove(KIND);
            }
            Self::Other(Value::Object(stored))
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn source() -> Source {
        Source {
            chunk_id: "faq/pay#1".into(),
            path: "faq/pay.md".into(),
            title: "Оплата".into(),
            heading: "Карты".into(),
            score: 1.5,
            coverage: 0.75,
            vector: None,
        }
    }

    fn round_trip(meta: &MessageMeta) -> Value {
        let json = serde_json::to_value(meta).unwrap();
        let back: MessageMeta = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(&back, meta, "{json}");
        json
    }

    #[test]
    fn every_kind_round_trips_in_the_shape_the_web_reads() {
        let llm = DecisionInfo::llm("m".into(), "system.md@abc".into());
        assert_eq!(
            round_trip(&MessageMeta::answer(llm.clone(), vec![source()])),
            json!({
                "kind": "answer", "decision": "answer", "engine": "llm", "model": "m",
                "prompt_version": "system.md@abc", "fallback": null,
                "sources": [{"chunk_id": "faq/pay#1", "path": "faq/pay.md", "title": "Оплата",
                             "heading": "Карты", "score": 1.5, "coverage": 0.75}],
            })
        );
        let clarify = round_trip(&MessageMeta::clarify(DecisionInfo::offline(Some("timeout".into())), vec![source()]));
        assert_eq!(clarify["kind"], "clarify");
        assert_eq!(clarify["decision"], "clarify");
        assert_eq!(clarify["engine"], "offline");
        assert_eq!(clarify["fallback"], "timeout");
        assert_eq!(clarify["suggestions"][0]["title"], "Оплата");
        assert_eq!(
            round_trip(&MessageMeta::handover(EscalationReason::NeedsHuman, Some("Двойное списание".into()), llm)),
            json!({
                "kind": "status", "status": "open", "mode": "human", "decision": "escalate",
                "reason": "needs_human", "summary": "Двойное списание", "engine": "llm", "model": "m",
                "prompt_version": "system.md@abc", "fallback": null,
            })
        );
        assert_eq!(
            round_trip(&MessageMeta::handover(EscalationReason::UserRequest, None, DecisionInfo::button())),
            json!({
                "kind": "status", "status": "open", "mode": "human", "decision": "escalate",
                "reason": "user_request", "engine": "button", "model": null, "prompt_version": null,
                "fallback": null,
            })
        );
        assert_eq!(
            round_trip(&MessageMeta::status(ConversationStatus::Closed, ConversationMode::Ai)),
            json!({ "kind": "status", "status": "closed", "mode": "ai" })
        );
        assert_eq!(
            round_trip(&MessageMeta::operator("Ольга", OperatorChannel::Telegram)),
            json!({ "kind": "operator", "operator": { "name": "Ольга", "via": "telegram" } })
        );
        let run = ActionRunId::new();
        assert_eq!(
            round_trip(&MessageMeta::action_result(Engine::Action, "check_zoom_status", run, true)),
            json!({
                "kind": "action_result", "decision": "action", "engine": "action",
                "action": "check_zoom_status", "action_run_id": run, "succeeded": true,
            })
        );
        assert_eq!(round_trip(&MessageMeta::error(None)), json!({ "kind": "error" }));
        assert_eq!(round_trip(&MessageMeta::error(Some(run))), json!({ "kind": "error", "action_run_id": run }));
        assert_eq!(round_trip(&MessageMeta::Empty), json!({}));
    }

    #[test]
    fn rows_stored_before_the_tag_still_read() {
        let answer: MessageMeta = serde_json::from_value(json!({
            "engine": "offline", "model": null, "prompt_version": null, "fallback": null,
            "decision": "answer", "sources": [],
        }))
        .unwrap();
        assert_eq!(answer, MessageMeta::answer(DecisionInfo::offline(None), vec![]));
        let clarify: MessageMeta = serde_json::from_value(json!({
            "engine": "llm", "model": "m", "prompt_version": "p", "fallback": null,
            "decision": "clarify", "suggestions": [],
        }))
        .unwrap();
        assert!(clarify.is_clarify());
        // An operator reply, edited in Telegram: PostgreSQL's timestamp format.
        let edited: MessageMeta = serde_json::from_value(json!({
            "operator": { "name": "Ольга", "via": "console" }, "edited_at": "2026-12-01T21:44:26.123456+00:00",
        }))
        .unwrap();
        let MessageMeta::Operator(operator) = edited else { panic!("{edited:?}") };
        assert_eq!(operator.operator.via, OperatorChannel::Console);
        assert!(operator.edited_at.is_some());
        let status: MessageMeta = serde_json::from_value(json!({
            "kind": "status", "decision": "escalate", "reason": "no_answer", "summary": null,
            "engine": "offline", "model": null, "prompt_version": null, "fallback": null,
            "status": "open", "mode": "human",
        }))
        .unwrap();
        assert_eq!(status.as_handover().unwrap().reason, EscalationReason::NoAnswer);
        assert_eq!(serde_json::from_value::<MessageMeta>(json!({})).unwrap(), MessageMeta::Empty);
    }

    #[test]
    fn rows_of_no_known_kind_are_kept_as_stored() {
        for stored in [
            json!({ "decision": "clarify" }),
            json!({ "kind": "mystery", "x": 1 }),
            json!({ "note": "hand-written" }),
            json!("not an object"),
        ] {
            let meta: MessageMeta = serde_json::from_value(stored.clone()).unwrap();
            assert!(matches!(meta, MessageMeta::Other(_)), "{stored}");
            assert_eq!(serde_json::to_value(&meta).unwrap(), stored);
        }
    }

    #[test]
    fn the_user_view_drops_what_is_for_operators_only() {
        let handover = MessageMeta::handover(
            EscalationReason::NeedsHuman,
            Some("Двойное списание".into()),
            DecisionInfo::offline(None),
        );
        let seen = serde_json::to_value(handover.clone().user_view()).unwrap();
        let mut whole = serde_json::to_value(handover).unwrap();
        whole.as_object_mut().unwrap().remove(SUMMARY);
        assert_eq!(seen, whole);
        assert!(seen.get(SUMMARY).is_none());

        let legacy: MessageMeta = serde_json::from_value(json!({ "summary": "s", "note": 1 })).unwrap();
        assert_eq!(serde_json::to_value(legacy.user_view()).unwrap(), json!({ "note": 1 }));

        let answer = MessageMeta::answer(DecisionInfo::offline(None), vec![source()]);
        assert_eq!(answer.clone().user_view(), answer);
    }
}
