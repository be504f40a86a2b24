//! Reading a decision out of the model's reply: exactly one tool call (or, in JSON mode, one
//! `{"decision": ...}` object), with arguments of the tool's shape.
//!
//! Invariant: a reply becomes a [`Decision`] only when every check passes — a known tool,
//! arguments that deserialize with no unknown fields, a non-empty answer within
//! `MAX_ANSWER_CHARS`, citations of passages that were in the context, an action that was
//! offered with valid params; otherwise the reason is returned for the repair round.

use concierge_shared::{actions::validate_params, knowledge::Hit};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Turn, client::ChatResponse};
use crate::engine::{self, Decision, EscalationReason, Source};

/// Longest answer accepted, in characters.
const MAX_ANSWER_CHARS: usize = 4_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionArgs {
    name: String,
    #[serde(default)]
    params: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerArgs {
    text: String,
    #[serde(default)]
    citations: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClarifyArgs {
    question: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalateArgs {
    reason: String,
    summary: String,
}

/// A JSON-mode reply: `{"decision": "answer", ...}` with the same fields as the tools.
#[derive(Deserialize)]
struct JsonDecision {
    decision: String,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// The decision in a reply, or why it is unusable.
pub(super) fn parse_decision(response: &ChatResponse, passages: &[Hit], turn: &Turn<'_>) -> Result<Decision, String> {
    let (name, arguments): (String, Value) = match response.tool_calls.as_slice() {
        [call] => {
            let args = serde_json::from_str(&call.function.arguments)
                .map_err(|e| format!("the arguments of `{}` are not valid JSON ({e})", call.function.name))?;
            (call.function.name.clone(), args)
        }
        [] => {
            let content = response.content.as_deref().ok_or("the reply is empty")?;
            let json = strip_fences(content);
            let parsed: JsonDecision =
                serde_json::from_str(json).map_err(|_| "the reply is not a tool call".to_owned())?;
            (parsed.decision, Value::Object(parsed.rest))
        }
        _ => return Err("more than one tool call".into()),
    };
    let texts = concierge_shared::i18n::Locale::from_code(&turn.conversation.locale).texts();
    match name.as_str() {
        "answer" => {
            let args: AnswerArgs =
                serde_json::from_value(arguments).map_err(|e| format!("bad `answer` arguments: {e}"))?;
            let text = args.text.trim();
            if text.is_empty() {
                return Err("the answer text is empty".into());
            }
            if text.chars().count() > MAX_ANSWER_CHARS {
                return Err(format!("the answer is longer than {MAX_ANSWER_CHARS} characters"));
            }
            let mut sources = Vec::new();
            for citation in &args.citations {
                let n: usize =
                    citation.trim_start_matches('p').parse().map_err(|_| format!("unknown citation {citation:?}"))?;
                let hit = passages
                    .get(n.wrapping_sub(1))
                    .ok_or_else(|| format!("citation {citation:?} is not in the context"))?;
                let source = Source::from(hit);
                if !sources.iter().any(|s: &Source| s.chunk_id == source.chunk_id) {
                    sources.push(source);
                }
            }
            Ok(Decision::Answer { text: text.to_owned(), sources })
        }
        "clarify" => {
            let args: ClarifyArgs =
                serde_json::from_value(arguments).map_err(|e| format!("bad `clarify` arguments: {e}"))?;
            if args.question.trim().is_empty() {
                return Err("the question is empty".into());
            }
            if turn.conversation.clarify_count >= engine::MAX_CLARIFICATIONS {
                return Ok(Decision::Escalate {
                    reason: EscalationReason::NoAnswer,
                    text: texts.handover(texts.escalated_after_clarify, chrono::Utc::now()),
                    summary: None,
                });
            }
            Ok(Decision::Clarify { text: args.question.trim().to_owned(), suggestions: vec![] })
        }
        "escalate" => {
            let args: EscalateArgs =
                serde_json::from_value(arguments).map_err(|e| format!("bad `escalate` arguments: {e}"))?;
            let reason = match args.reason.as_str() {
                "user_request" => EscalationReason::UserRequest,
                "no_answer" => EscalationReason::NoAnswer,
                "needs_human" => EscalationReason::NeedsHuman,
                "security" => EscalationReason::Security,
                other => return Err(format!("unknown escalation reason {other:?}")),
            };
            Ok(Decision::Escalate {
                reason,
                text: texts.handover(texts.escalated_to_human, chrono::Utc::now()),
                summary: Some(args.summary.trim().to_owned()),
            })
        }
        "run_action" if !turn.actions.is_empty() => {
            let args: ActionArgs =
                serde_json::from_value(arguments).map_err(|e| format!("bad `run_action` arguments: {e}"))?;
            let action = turn
                .actions
                .iter()
                .find(|a| a.name == args.name)
                .ok_or_else(|| format!("unknown action {:?}", args.name))?;
            let params = if args.params.is_null() { json!({}) } else { args.params };
            validate_params(action.schema(), &params)
                .map_err(|problem| format!("bad params for {}: {problem}", action.name))?;
            Ok(Decision::Action { name: action.name.clone(), params })
        }
        other => Err(format!("unknown tool `{other}`; use one of the tools offered")),
    }
}

fn strip_fences(content: &str) -> &str {
    let trimmed = content.trim();
    trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|rest| rest.strip_suffix("```"))
        .map_or(trimmed, str::trim)
}
