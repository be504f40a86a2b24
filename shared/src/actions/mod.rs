//! Read-only diagnostic actions: their definitions, parameter validation, trigger phrases, and
//! the log of runs.
//!
//! Parameters are described with a subset of JSON Schema that covers what read-only lookups
//! need — an object of `string` / `integer` / `boolean` properties with `required`,
//! `additionalProperties: false`, `enum`, `maxLength`, `pattern`, `minimum`, `maximum`,
//! `description` — and a definition that uses anything else is refused when it is loaded, so
//! nothing is silently unchecked.
//!
//! A declarative (`http`) action is a GET of a path on the host platform's API, with
//! `{param}` placeholders (and `{user_id}`, always the conversation's owner), and a message
//! template filled from JSON pointers into the response. The path can never name another host.
//!
//! `handler` names what runs an action, `runs` holds the log of runs.

mod handler;
mod runs;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;

pub use handler::{Builtin, Handler, UnknownHandler};
pub use runs::*;

/// One action as written in `fixtures/initial_actions.json` and stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, sqlx::FromRow, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionDefinition {
    pub name: String,
    pub display_name: String,
    pub description: String,
    /// A JSON Schema of the parameters.
    #[schema(value_type = Object)]
    pub parameters: sqlx::types::Json<Value>,
    #[serde(default)]
    pub trigger_keywords: Vec<String>,
    #[schema(value_type = String, example = "builtin:check_zoom_status")]
    pub handler: Handler,
    #[serde(default)]
    #[schema(value_type = Option<HttpAction>)]
    pub http: Option<sqlx::types::Json<HttpAction>>,
    #[serde(default = "yes")]
    pub requires_user: bool,
    #[serde(default = "yes")]
    pub read_only: bool,
    #[serde(default = "yes")]
    pub active: bool,
    /// `trigger_keywords` stemmed, computed on first use.
    #[serde(skip)]
    #[sqlx(skip)]
    pub trigger_stems: TriggerStems,
}

/// The stems of an action's trigger phrases, computed once per definition read rather than for
/// every message it is matched against.
#[derive(Debug, Clone, Default)]
pub struct TriggerStems(std::sync::OnceLock<Vec<Vec<String>>>);

/// Derived from the phrases, so it never makes two definitions differ.
impl PartialEq for TriggerStems {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

fn yes() -> bool {
    true
}

/// A declarative action.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpAction {
    /// A path on the platform API, e.g. `/users/{user_id}/homework`.
    pub path: String,
    /// The message to the user, with `{field}` placeholders.
    pub message: String,
    /// Field name → JSON pointer into the response.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// What to show for a field the response lacks (or has as null).
    #[serde(default)]
    pub missing: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DefinitionError {
    #[error("action {0}: {1}")]
    Invalid(String, String),
}

impl ActionDefinition {
    /// Refuse definitions that would do more than a read-only lookup on the platform.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        let bad = |why: String| Err(DefinitionError::Invalid(self.name.clone(), why));
        let name_ok = self.name.len() >= 2
            && self.name.len() <= 63
            && self.name.starts_with(|c: char| c.is_ascii_lowercase())
            && self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !name_ok {
            return bad("the name must be lowercase letters, digits and _".into());
        }
        if !self.read_only {
            return bad("only read-only actions are allowed".into());
        }
        if let Err(why) = check_schema(&self.parameters) {
            return bad(format!("parameters: {why}"));
        }
        match (self.handler, &self.http) {
            (Handler::Http, Some(http)) => {
                if let Err(why) = check_path(&http.path) {
                    return bad(why);
                }
                for pointer in http.fields.values() {
                    if !(pointer.is_empty() || pointer.starts_with('/')) {
                        return bad(format!("{pointer:?} is not a JSON pointer"));
                    }
                }
                Ok(())
            }
            (Handler::Http, None) => bad("an http action needs `http`".into()),
            (Handler::Builtin(_), None) => Ok(()),
            (handler @ Handler::Builtin(_), Some(_)) => bad(format!("unknown handler {:?}", handler.as_str())),
        }
    }

    /// The parameters' JSON Schema.
    pub fn schema(&self) -> &Value {
        &self.parameters.0
    }

    /// Whether a text whose [`stems`](crate::knowledge::stems) are `words` matches one of the
    /// trigger phrases: the stem of every word of a phrase begins the stem of a word of the text
    /// (the knowledge index's Snowball stemmers), so inflections and cut-off phrase words match
    /// ("урока" matches "уроков", "зум не подключ" matches "не подключается"), and words that
    /// merely share letters do not ("проверь" is not "провела"). A stem shorter than three
    /// letters must be the whole stem ("моя" is not "можно", "не" is not "нет").
    pub fn triggered_by(&self, words: &[String]) -> bool {
        self.trigger_phrases().iter().any(|phrase| phrase_matches(phrase, words))
    }

    /// The stems of each trigger phrase, computed on the first call.
    pub fn trigger_phrases(&self) -> &[Vec<String>] {
        self.trigger_stems
            .0
            .get_or_init(|| self.trigger_keywords.iter().map(|phrase| crate::knowledge::stems(phrase)).collect())
    }
}

/// A declarative path must stay on the platform: relative, no scheme, no authority, no `..`.
pub fn check_path(path: &str) -> Result<(), String> {
    let lower = path.to_ascii_lowercase();
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(format!("the path {path:?} must start with a single /"));
    }
    if lower.contains("://") || path.contains('@') || path.contains('\\') || path.split('/').any(|s| s == "..") {
        return Err(format!("the path {path:?} may not name another host or leave the API"));
    }
    Ok(())
}

fn check_schema(schema: &Value) -> Result<(), String> {
    let object = schema.as_object().ok_or("must be a JSON object")?;
    for key in object.keys() {
        if !["type", "properties", "required", "additionalProperties", "description"].contains(&key.as_str()) {
            return Err(format!("unsupported keyword {key:?}"));
        }
    }
    if object.get("type") != Some(&Value::String("object".into())) {
        return Err("the type must be object".into());
    }
    if object.get("additionalProperties") != Some(&Value::Bool(false)) {
        return Err("additionalProperties must be false".into());
    }
    for (name, property) in object.get("properties").and_then(Value::as_object).into_iter().flatten() {
        let property = property.as_object().ok_or(format!("{name}: must be an object"))?;
        for key in property.keys() {
            if !["type", "enum", "maxLength", "pattern", "minimum", "maximum", "description"].contains(&key.as_str()) {
                return Err(format!("{name}: unsupported keyword {key:?}"));
            }
        }
        match property.get("type").and_then(Value::as_str) {
            Some("string" | "integer" | "boolean") => {}
            other => return Err(format!("{name}: unsupported type {other:?}")),
        }
        if let Some(pattern) = property.get("pattern").and_then(Value::as_str) {
            regex_lite::Regex::new(pattern).map_err(|e| format!("{name}: bad pattern: {e}"))?;
        }
    }
    Ok(())
}

/// Check `params` against the definition's schema; the message names the problem.
pub fn validate_params(schema: &Value, params: &Value) -> Result<(), String> {
    let params = params.as_object().ok_or("params must be a JSON object")?;
    let properties = schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        let name = required.as_str().unwrap_or_default();
        if !params.contains_key(name) {
            return Err(format!("{name} is required"));
        }
    }
    for (name, value) in params {
        let property = properties.get(name).ok_or(format!("unknown parameter {name:?}"))?;
        match (property.get("type").and_then(Value::as_str), value) {
            (Some("string"), Value::String(text)) => {
                if let Some(max) = property.get("maxLength").and_then(Value::as_u64)
                    && text.chars().count() as u64 > max
                {
                    return Err(format!("{name} is longer than {max} characters"));
                }
                if let Some(pattern) = property.get("pattern").and_then(Value::as_str) {
                    let regex = regex_lite::Regex::new(pattern).map_err(|e| e.to_string())?;
                    if !regex.is_match(text) {
                        return Err(format!("{name} does not match {pattern}"));
                    }
                }
            }
            (Some("integer"), Value::Number(n)) if n.is_i64() => {
                let n = n.as_i64().unwrap_or_default();
                if property.get("minimum").and_then(Value::as_i64).is_some_and(|min| n < min)
                    || property.get("maximum").and_then(Value::as_i64).is_some_and(|max| n > max)
                {
                    return Err(format!("{name} is out of range"));
                }
            }
            (Some("boolean"), Value::Bool(_)) => {}
            (expected, _) => return Err(format!("{name} must be a {}", expected.unwrap_or("value"))),
        }
        if let Some(allowed) = property.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            return Err(format!("{name} must be one of {}", Value::Array(allowed.clone())));
        }
    }
    Ok(())
}

/// Whether every stem of a phrase begins the stem of a word (see [`ActionDefinition::triggered_by`]).
fn phrase_matches(phrase: &[String], words: &[String]) -> bool {
    const SHORT: usize = 3;
    !phrase.is_empty()
        && phrase.iter().all(|p| {
            let short = p.chars().count() < SHORT;
            words.iter().any(|w| if short { w == p } else { w.starts_with(p.as_str()) })
        })
}

/// Lowercased words with ё folded to е: how phrases are compared with what users type.
pub fn split_words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace('ё', "е")
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Load definitions from the fixtures file, idempotently: new ones are added, existing ones
/// updated, except their `active` switch, which belongs to the admins.
pub async fn load_fixtures(pool: &PgPool, path: &std::path::Path) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let definitions: Vec<ActionDefinition> =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    for definition in &definitions {
        definition.validate()?;
    }
    let mut tx = pool.begin().await?;
    for d in &definitions {
        sqlx::query(
            "INSERT INTO action_definitions (name, display_name, description, parameters, trigger_keywords, handler, http,
                 requires_user, read_only, active)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (name) DO UPDATE SET display_name = $2, description = $3, parameters = $4,
                 trigger_keywords = $5, handler = $6, http = $7, requires_user = $8, read_only = $9, updated_at = now()",
        )
        .bind(&d.name)
        .bind(&d.display_name)
        .bind(&d.description)
        .bind(&d.parameters)
        .bind(&d.trigger_keywords)
        .bind(d.handler)
        .bind(&d.http)
        .bind(d.requires_user)
        .bind(d.read_only)
        .bind(d.active)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(definitions.len())
}

const DEFINITION_COLUMNS: &str =
    "name, display_name, description, parameters, trigger_keywords, handler, http, requires_user, read_only, active";

pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<ActionDefinition>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {DEFINITION_COLUMNS} FROM action_definitions ORDER BY name")))
        .fetch_all(pool)
        .await
}

/// Active actions a caller may run: all of them for signed-in users, only those that need no
/// user for visitors.
pub async fn available(pool: &PgPool, signed_in: bool) -> sqlx::Result<Vec<ActionDefinition>> {
    Ok(list(pool).await?.into_iter().filter(|a| a.active && (signed_in || !a.requires_user)).collect())
}

pub async fn get(pool: &PgPool, name: &str) -> sqlx::Result<Option<ActionDefinition>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {DEFINITION_COLUMNS} FROM action_definitions WHERE name = $1")))
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// Switch an action on or off; `false` if there is no such action.
pub async fn set_active(pool: &PgPool, name: &str, active: bool) -> sqlx::Result<bool> {
    let updated = sqlx::query("UPDATE action_definitions SET active = $2, updated_at = now() WHERE name = $1")
        .bind(name)
        .bind(active)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(updated == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_are_checked_against_the_schema() {
        let schema = json!({ "type": "object", "properties": {
            "date": { "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$" },
            "n": { "type": "integer", "minimum": 1, "maximum": 5 }
        }, "required": ["date"], "additionalProperties": false });
        assert!(check_schema(&schema).is_ok());
        assert!(validate_params(&schema, &json!({ "date": "2026-11-24" })).is_ok());
        assert!(validate_params(&schema, &json!({})).unwrap_err().contains("required"));
        assert!(validate_params(&schema, &json!({ "date": "вчера" })).is_err());
        assert!(
            validate_params(&schema, &json!({ "date": "2026-11-24", "user_id": 42 })).unwrap_err().contains("unknown")
        );
        assert!(validate_params(&schema, &json!({ "date": "2026-11-24", "n": 9 })).is_err());
        assert!(
            check_schema(&json!({ "type": "object", "properties": {}, "additionalProperties": false, "$ref": "x" }))
                .is_err()
        );
    }

    #[test]
    fn declarative_paths_stay_on_the_platform() {
        for path in ["/users/{user_id}/homework", "/status"] {
            assert!(check_path(path).is_ok(), "{path}");
        }
        for path in ["https://evil.example/x", "//evil.example/x", "/a/../../admin", "/x@evil", "users"] {
            assert!(check_path(path).is_err(), "{path}");
        }
    }

    #[test]
    fn triggers_match_inflected_phrases() {
        let keywords = vec!["не работает зум".to_owned(), "где запись урока".to_owned()];
        assert!(triggered(&keywords, "У меня не работает зум!"));
        assert!(triggered(&keywords, "где записи вчерашних уроков?"));
        assert!(!triggered(&keywords, "как подключить зум"));
        // Words that share their first letters with a phrase's are other words.
        let check = vec!["проверь зум".to_owned()];
        assert!(triggered(&check, "Проверьте, пожалуйста, мой зум"));
        assert!(!triggered(&check, "Я провела урок в зуме"));
        let mine = vec!["моя подписка".to_owned()];
        assert!(triggered(&mine, "Что с моей подпиской?"));
        assert!(!triggered(&mine, "можно подписку через СБП оплатить?"));
    }

    fn definition(trigger_keywords: Vec<String>) -> ActionDefinition {
        ActionDefinition {
            name: "check_zoom_status".into(),
            display_name: "Zoom".into(),
            description: String::new(),
            parameters: sqlx::types::Json(serde_json::json!({ "type": "object" })),
            trigger_keywords,
            handler: "builtin:check_zoom_status".parse().unwrap(),
            http: None,
            requires_user: true,
            read_only: true,
            active: true,
            trigger_stems: TriggerStems::default(),
        }
    }

    /// Whether `text` triggers a fresh definition with these phrases.
    fn triggered(keywords: &[String], text: &str) -> bool {
        definition(keywords.to_vec()).triggered_by(&crate::knowledge::stems(text))
    }

    #[test]
    fn a_definition_matches_as_its_phrases_do() {
        let definition = definition(vec!["не работает зум".into(), "проверь зум".into()]);
        for text in
            ["У меня не работает зум!", "Проверьте, пожалуйста, мой зум", "Я провела урок в зуме", "как подключить зум"]
        {
            let words = crate::knowledge::stems(text);
            assert_eq!(definition.triggered_by(&words), triggered(&definition.trigger_keywords, text), "{text}");
        }
        // The stems are computed once, and travel with a copy.
        assert!(definition.trigger_stems.0.get().is_some());
        assert!(definition.clone().trigger_stems.0.get().is_some());
    }
}
