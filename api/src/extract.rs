//! Extractors that wrap axum's own so that every rejection (bad JSON, unknown fields, wrong
//! types, oversized bodies, malformed ids and query strings) answers in the API's error shape.

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Years a date given as input may fall in: the database stores them, and date arithmetic on
/// them cannot overflow.
pub const PLAUSIBLE_YEARS: std::ops::RangeInclusive<i32> = 2000..=9000;

/// A JSON body: an object, as the OpenAPI document says (serde would also read a struct from an
/// array of its fields). Request types use `#[serde(deny_unknown_fields)]`. A string anywhere in
/// it that holds a NUL character is refused here, naming its field: PostgreSQL stores no NUL in
/// text or jsonb.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) =
            axum::Json::<serde_json::Value>::from_request(req, state).await.map_err(json_rejection)?;
        if !value.is_object() {
            return Err(ApiError::validation("invalid_body", "body", "the body must be a JSON object"));
        }
        if let Some(field) = nul_at(&value, "body") {
            return Err(ApiError::validation(
                "invalid_text",
                field.clone(),
                format!("{field} contains a NUL character"),
            ));
        }
        // The path of the field at fault goes into the message and `field`, as axum's own
        // extractor puts it into its message.
        serde_path_to_error::deserialize(value).map(Json).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            if path == "." {
                ApiError::validation("invalid_body", "body", inner.to_string())
            } else {
                ApiError::validation("invalid_body", path.clone(), format!("{path}: {inner}"))
            }
        })
    }
}

/// The path (`params.lesson_id`) of the first string or key holding a NUL character.
pub(crate) fn nul_at(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(text) if text.contains('\0') => Some(path.to_owned()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| nul_at(item, &format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let inner = if path == "body" { key.clone() } else { format!("{path}.{key}") };
            if key.contains('\0') { Some(inner) } else { nul_at(item, &inner) }
        }),
        _ => None,
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(error) => {
            ApiError::validation("invalid_body", "body", strip_prefix(&error.body_text()))
        }
        JsonRejection::JsonSyntaxError(error) => {
            ApiError::bad_request("invalid_json", strip_prefix(&error.body_text()))
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("expected a JSON body with `Content-Type: application/json`".into())
        }
        JsonRejection::BytesRejection(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge
        }
        other => ApiError::bad_request("invalid_body", other.body_text()),
    }
}

/// serde_json's messages are clear; axum's generic prefix adds nothing.
fn strip_prefix(text: &str) -> String {
    for prefix in
        ["Failed to deserialize the JSON body into the target type: ", "Failed to parse the request body as JSON: "]
    {
        if let Some(rest) = text.strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
    text.to_owned()
}

/// Path parameters; a malformed id is a 400 naming the problem, and so is a NUL character
/// (`%00`), which PostgreSQL cannot store or compare.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if holds_encoded_nul(parts.uri.path()) {
            return Err(ApiError::bad_request("invalid_path", "the path contains a NUL character"));
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::bad_request("invalid_path", rejection.body_text())),
        }
    }
}

/// Query parameters; unknown or malformed ones are a 400, and so is one holding a NUL character.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        if let Some((name, _)) = url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            let name = name.replace('\0', "\u{fffd}");
            return Err(ApiError::bad_request("invalid_query", format!("{name} contains a NUL character")));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::bad_request(
                "invalid_query",
                rejection.body_text().trim_start_matches("Failed to deserialize query string: ").to_owned(),
            )),
        }
    }
}

/// Whether percent-decoding `text` yields a NUL: `%00` is the only escape that does.
fn holds_encoded_nul(text: &str) -> bool {
    text.as_bytes().windows(3).any(|w| w == b"%00")
}
