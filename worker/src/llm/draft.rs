//! Knowledge drafts written by the model: a user's question and an operator's answer turned
//! into a help-centre article (`prompts/knowledge_draft.md`), as a JSON object with its title
//! and body. The call is recorded like every other (purpose `kb_draft`), against the answer.
//!
//! The model is not trusted to follow the prompt: a reply that is not such an object, or whose
//! title or body would not make a document, is refused, and the caller falls back to the plain
//! template, saying why.

use std::time::Instant;

use concierge_shared::{
    db::{conversations::Conversation, knowledge_drafts::Draft},
    knowledge::draft::{checked_body, checked_title},
};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use super::{
    Llm, budget_spent,
    client::{ChatMessage, ChatRequest},
    record::{record, record_invalid},
};

/// The prompt's file in the prompts folder.
pub const PROMPT_FILE: &str = "knowledge_draft.md";

#[derive(Deserialize)]
struct Written {
    title: String,
    body: String,
}

/// The draft's title and body as the model wrote them, or the word for why the template must
/// write it (`no_prompt`, `circuit_open`, a budget spent, the call's failure, `invalid_reply`).
pub async fn write(
    llm: &Llm,
    pool: &PgPool,
    conversation: &Conversation,
    draft: &Draft,
) -> anyhow::Result<Result<(String, String), &'static str>> {
    let path = llm.config.prompts_dir.join(PROMPT_FILE);
    let Ok(prompt) = tokio::fs::read_to_string(&path).await else {
        tracing::warn!(path = %path.display(), "no knowledge-draft prompt; the template writes the draft");
        return Ok(Err("no_prompt"));
    };
    if llm.client.circuit_open() {
        return Ok(Err("circuit_open"));
    }
    if let Some(reason) = budget_spent(pool, &llm.config, conversation).await? {
        return Ok(Err(reason));
    }
    let data = json!({ "question": draft.question, "operator_answer": draft.answer });
    let request = ChatRequest {
        messages: vec![ChatMessage::new("system", prompt), ChatMessage::new("user", data.to_string())],
        tools: Vec::new(),
        response_format: Some(r#"{"type":"json_object"}"#.into()),
        max_tokens: 1200,
        stream: false,
    };
    let ids = (conversation.id, draft.answer_id);
    let started = Instant::now();
    let result = llm.client.chat(&request, &mut |_| {}).await;
    let elapsed = started.elapsed().as_millis() as i64;
    let response = match &result {
        Ok(response) => response,
        Err(error) => {
            record(pool, llm, ids, "kb_draft", &result, elapsed).await?;
            tracing::warn!(%error, "the model did not write the knowledge draft; the template does");
            return Ok(Err(error.outcome()));
        }
    };
    match parse(response.content.as_deref().unwrap_or_default()) {
        Some(written) => {
            record(pool, llm, ids, "kb_draft", &result, elapsed).await?;
            Ok(Ok(written))
        }
        None => {
            record_invalid(pool, llm, ids, "kb_draft", response, "not a {title, body} object", elapsed).await?;
            Ok(Err("invalid_reply"))
        }
    }
}

/// The title and body of a reply, also inside a ```json fence, when both would make a document.
fn parse(content: &str) -> Option<(String, String)> {
    let text = content.trim();
    let text = text
        .strip_prefix("```json")
        .or_else(|| text.strip_prefix("```"))
        .and_then(|rest| rest.trim_end().strip_suffix("```"))
        .unwrap_or(text);
    let written: Written = serde_json::from_str(text.trim()).ok()?;
    let title = checked_title(&written.title).ok()?.to_owned();
    let body = checked_body(&written.body).ok()?.to_owned();
    Some((title, body))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn replies_are_read_only_when_they_make_a_document() {
        let reply = r#"{"title": "Как сменить язык", "body": "Откройте **Настройки → Язык**."}"#;
        assert_eq!(parse(reply), Some(("Как сменить язык".into(), "Откройте **Настройки → Язык**.".into())));
        assert!(parse(&format!("```json\n{reply}\n```")).is_some());
        assert_eq!(parse(r#"{"title": "", "body": "x"}"#), None);
        assert_eq!(parse(r#"{"title": "a\nb", "body": "x"}"#), None);
        assert_eq!(parse("Вот статья: ..."), None);
    }
}
