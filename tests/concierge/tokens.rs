//! Platform tokens: `iss` and `aud` when configured, `nbf`, and the clock leeway.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, now, platform_token};

const ISSUER: &str = "https://lectio.example.com";
const AUDIENCE: &str = "concierge";

fn claims(extra: Value) -> Value {
    let mut claims = json!({ "sub": "token-user", "name": "Анна", "role": "user", "exp": now() + 3600 });
    claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    claims
}

/// The status of listing one's conversations with `claims` signed by the platform, and the
/// error message when refused.
async fn answer(app: &TestApp, claims: Value) -> (StatusCode, String) {
    let (status, body) = app.get(Some(&platform_token(claims)), "/conversations/").await;
    (status, body["error"]["message"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn issuer_and_audience_are_required_when_configured() {
    let app = TestApp::spawn_with(|config| {
        config.jwt_issuer = Some(ISSUER.into());
        config.jwt_audience = Some(AUDIENCE.into());
    })
    .await;
    let good = claims(json!({ "iss": ISSUER, "aud": AUDIENCE }));
    assert_eq!(answer(&app, good).await.0, StatusCode::OK);
    // A token may be meant for several services, ours among them.
    let several = claims(json!({ "iss": ISSUER, "aud": ["billing", AUDIENCE] }));
    assert_eq!(answer(&app, several).await.0, StatusCode::OK);

    for (bad, why) in [
        (claims(json!({ "aud": AUDIENCE })), "iss"),
        (claims(json!({ "iss": "https://evil.example.com", "aud": AUDIENCE })), "Issuer"),
        (claims(json!({ "iss": ISSUER })), "aud"),
        (claims(json!({ "iss": ISSUER, "aud": "billing" })), "Audience"),
    ] {
        let (status, message) = answer(&app, bad.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(message.contains("invalid platform token") && message.contains(why), "{bad}: {message}");
    }
}

#[tokio::test]
async fn without_configured_issuer_and_audience_they_are_not_checked() {
    let app = TestApp::spawn().await;
    let any = claims(json!({ "iss": "https://anyone.example.com", "aud": "someone-else" }));
    assert_eq!(answer(&app, any).await.0, StatusCode::OK);
    assert_eq!(answer(&app, claims(json!({}))).await.0, StatusCode::OK);
}

#[tokio::test]
async fn not_before_is_honoured_within_the_leeway() {
    let app = TestApp::spawn().await;
    assert_eq!(answer(&app, claims(json!({ "nbf": now() - 60 }))).await.0, StatusCode::OK);
    // A platform clock a little ahead of ours.
    assert_eq!(answer(&app, claims(json!({ "nbf": now() + 10 }))).await.0, StatusCode::OK);
    let (status, message) = answer(&app, claims(json!({ "nbf": now() + 300 }))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message.contains("ImmatureSignature"), "{message}");
}

#[tokio::test]
async fn expiry_allows_a_small_leeway_only() {
    let app = TestApp::spawn().await;
    assert_eq!(answer(&app, claims(json!({ "exp": now() - 10 }))).await.0, StatusCode::OK);
    let (status, message) = answer(&app, claims(json!({ "exp": now() - 90 }))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message.contains("ExpiredSignature"), "{message}");
}
