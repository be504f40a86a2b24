//! Reading a decision out of the model's reply: exactly one tool call, or one decision written
//! as JSON in the text (`{"decision": ...}`, or a tool call's bare `{"name", "arguments"}`
//! shape), in every decision format, with arguments of the tool's shape.
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
            decision_in_text(content)?
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
                let n = citation_number(citation).ok_or_else(|| format!("unknown citation {citation:?}"))?;
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

/// The passage number a citation names: `p2`, also as `P2`, `[p2]` or `p2: <the passage's text>`,
/// as small models write them.
fn citation_number(citation: &str) -> Option<usize> {
    let rest = citation.trim().trim_start_matches('[').trim_start();
    let rest = rest.strip_prefix(['p', 'P']).unwrap_or(rest);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after = rest[digits.len()..].chars().next();
    if after.is_some_and(|c| c.is_alphanumeric()) {
        return None;
    }
    digits.parse().ok()
}

/// The fields each decision kind takes; in a `{"decision": ...}` object the others are ignored
/// (a schema-constrained reply writes them as null).
fn fields_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "answer" => &["text", "citations"],
        "clarify" => &["question"],
        "escalate" => &["reason", "summary"],
        "run_action" => &["name", "params"],
        _ => &[],
    }
}

/// A decision written as JSON text: `{"decision": "answer", "text": ...}` (the JSON formats),
/// or the bare shape of a tool call, `{"name": "answer", "arguments": {...}}` with the arguments
/// as an object or as JSON text, which small models write instead of calling the tool. Either
/// may come inside a ```json fence or `<tool_call>` tags, or after a sentence.
fn decision_in_text(content: &str) -> Result<(String, Value), String> {
    let not_json = || "the reply is neither a tool call nor one JSON decision object".to_owned();
    let json = json_part(content).ok_or_else(not_json)?;
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(json) else { return Err(not_json()) };
    if let Some(Value::String(kind)) = object.remove("decision") {
        let fields = fields_of(&kind);
        let arguments =
            object.into_iter().filter(|(key, value)| fields.contains(&key.as_str()) && !value.is_null()).collect();
        return Ok((kind, Value::Object(arguments)));
    }
    let name = object.get("name").and_then(Value::as_str).map(str::to_owned);
    let arguments = object.remove("arguments").or_else(|| object.remove("parameters"));
    match (name, arguments) {
        (Some(name), Some(Value::String(text))) => {
            let arguments = serde_json::from_str(&text)
                .map_err(|e| format!("the arguments of `{name}` are not valid JSON ({e})"))?;
            Ok((name, arguments))
        }
        (Some(name), Some(arguments)) => Ok((name, arguments)),
        _ => Err(not_json()),
    }
}

/// The JSON object in a reply's text: inside a fence or `<tool_call>` tags, else from the first
/// `{` to the last `}`.
fn json_part(content: &str) -> Option<&str> {
    let mut text = content.trim();
    if let Some(start) = text.find("```") {
        let inner = &text[start + 3..];
        let inner = inner.strip_prefix("json").unwrap_or(inner);
        text = inner.find("```").map_or(inner, |end| &inner[..end]);
    } else if let Some(start) = text.find("<tool_call>") {
        let inner = &text[start + "<tool_call>".len()..];
        text = inner.find("</tool_call>").map_or(inner, |end| &inner[..end]);
    }
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    (start < end).then(|| &text[start..=end])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{citation_number, decision_in_text};

    #[test]
    fn citations_are_read_as_small_models_write_them() {
        for (citation, n) in
            [("p1", Some(1)), ("P2", Some(2)), ("[p3]", Some(3)), ("p1: Тариф «Профи»", Some(1)), ("4", Some(4))]
        {
            assert_eq!(citation_number(citation), n, "{citation}");
        }
        for citation in ["doc", "p", "p1x", ""] {
            assert_eq!(citation_number(citation), None, "{citation}");
        }
    }

    #[test]
    fn decisions_written_as_text_are_read_in_every_shape_small_models_use() {
        let answer = json!({ "text": "Да.", "citations": ["p1"] });
        for content in [
            r#"{"decision": "answer", "text": "Да.", "citations": ["p1"], "question": null, "reason": null}"#
                .to_owned(),
            format!("```json\n{}\n```", json!({ "decision": "answer", "text": "Да.", "citations": ["p1"] })),
            json!({ "name": "answer", "arguments": answer }).to_string(),
            json!({ "name": "answer", "arguments": answer.to_string() }).to_string(),
            format!("Вот ответ:\n```\n{}\n```", json!({ "name": "answer", "arguments": answer })),
            format!("<tool_call>\n{}\n</tool_call>", json!({ "name": "answer", "arguments": answer })),
        ] {
            let (name, arguments) = decision_in_text(&content).unwrap_or_else(|e| panic!("{content}: {e}"));
            assert_eq!((name.as_str(), &arguments), ("answer", &answer), "{content}");
        }
        let (name, arguments) =
            decision_in_text(r#"{"decision": "run_action", "name": "check_zoom_status", "params": {}}"#).unwrap();
        assert_eq!((name.as_str(), arguments), ("run_action", json!({ "name": "check_zoom_status", "params": {} })));
        for content in [
            "Оплатить можно картой.",
            "{\"text\": \"без решения\"}",
            "{\"name\": \"answer\", \"arguments\": \"{oops\"}",
        ] {
            assert!(decision_in_text(content).is_err(), "{content}");
        }
    }
}
