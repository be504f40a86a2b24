//! Declarative actions (`handler: http`): a GET of a platform path with the parameters filled
//! in, and a message template filled from JSON pointers into the response.
//!
//! Invariant: `{user_id}` is always the conversation's owner; every filled segment is escaped,
//! and a path with a placeholder left unfilled is never requested.

use concierge_shared::{actions::HttpAction, i18n::fill};
use serde_json::Value;

use super::Outcome;
use crate::{
    Context,
    platform::{PlatformError, segment},
};

/// A declarative action: GET the path with parameters filled in, fill the message from the
/// response.
pub(super) async fn declarative(
    ctx: &Context,
    http: &HttpAction,
    user: &str,
    params: &Value,
) -> Result<Outcome, PlatformError> {
    let mut path = http.path.replace("{user_id}", &segment(user));
    for (name, value) in params.as_object().into_iter().flatten() {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        path = path.replace(&format!("{{{name}}}"), &segment(&text));
    }
    if path.contains('{') {
        return Err(PlatformError::Malformed("the path has unfilled parameters".into()));
    }
    let raw = ctx.platform.get_value(&path).await?;
    let missing = http.missing.clone().unwrap_or_else(|| "—".into());
    let values: Vec<(String, String)> = http
        .fields
        .iter()
        .map(|(name, pointer)| {
            let text = match raw.pointer(pointer) {
                None | Some(Value::Null) => missing.clone(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (name.clone(), text)
        })
        .collect();
    let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let message = fill(&http.message, &pairs);
    Ok(Outcome::success(message, format!("GET {}", http.path), raw))
}
