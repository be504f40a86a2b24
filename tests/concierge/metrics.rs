//! Conversation metrics from real conversations: the job computes a day, the API serves it.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, WAIT, platform_token, user_token, wait_until};

#[tokio::test]
async fn the_metrics_job_counts_what_the_ai_solved_and_what_went_to_people() {
    let app = TestApp::spawn_with_worker().await;
    let admin =
        platform_token(json!({ "sub": "op", "name": "Ольга", "role": "admin", "exp": crate::helpers::now() + 600 }));

    let solved = app.open(Some(&user_token("anna"))).await;
    let mut sse = app.stream(&solved, None).await;
    app.say(&solved, "Как оплатить подписку?").await;
    sse.next_from("assistant").await;
    let (status, _) =
        app.post(Some(&solved.bearer), &format!("/conversations/{}/rate", solved.id), json!({ "rating": 5 })).await;
    assert_eq!(status, StatusCode::OK);

    let escalated = app.open(None).await;
    let mut sse = app.stream(&escalated, None).await;
    app.say(&escalated, "Позовите оператора").await;
    sse.next_from("system").await;
    let (status, _) = app
        .post(
            Some(&admin),
            &format!("/admin/conversations/{}/reply", escalated.id),
            json!({ "content": "Здравствуйте!" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let today = chrono::Utc::now().date_naive().to_string();
    // The schedule may have computed the day earlier, mid-test: wait for the requested run.
    let requested_at = chrono::Utc::now();
    let (status, queued) =
        app.post(Some(&admin), "/admin/metrics/recompute", json!({ "from": today, "to": today })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let day = wait_until("the day computed", WAIT, async || {
        let (_, metrics) = app.get(Some(&admin), &format!("/admin/metrics?from={today}&to={today}")).await;
        let fresh = |day: &&serde_json::Value| {
            day["computed_at"]
                .as_str()
                .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                .is_some_and(|at| at >= requested_at)
        };
        metrics["days"].as_array().and_then(|days| days.first()).filter(fresh).cloned().ok_or(metrics)
    })
    .await;
    assert_eq!(day["conversations"], 2, "{day}");
    assert_eq!(day["ai_resolved"], 1, "{day}");
    assert_eq!(day["escalated"], 1, "{day}");
    assert_eq!(day["rated"], 1);
    assert_eq!(day["avg_rating"], 5.0);
    assert_eq!(day["messages"], 2);
    assert!(day["first_reply_p50_ms"].as_f64().unwrap() > 0.0, "{day}");
    assert!(day["first_human_reply_p50_ms"].as_f64().is_some(), "{day}");

    let (status, body) = app.get(Some(&admin), "/admin/metrics?from=2026-13-01").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = app.get(Some(&user_token("anna")), "/admin/metrics").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// The value of the Prometheus series `name` whose labels include `label`, 0 when absent.
fn series(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with('{') && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn prometheus_counts_uploaded_files_and_their_bytes_by_kind() {
    let app = TestApp::spawn().await;
    let conversation = app.open(None).await;
    let scrape =
        async || app.client.get(format!("http://{}/metrics", app.addr)).send().await.unwrap().text().await.unwrap();
    let before = scrape().await;
    let pdf = crate::voice::pdf();
    let stored = crate::voice::upload(&app, &conversation, "check.pdf", "application/pdf", pdf.clone()).await;
    assert_eq!(stored["size_bytes"], pdf.len());
    let after = scrape().await;
    // Other tests in this process upload too: the counters grow by at least this file.
    let grown = |name: &str, label: &str| series(&after, name, label) - series(&before, name, label);
    assert!(grown("concierge_attachment_uploads_total", "outcome=\"stored\"") >= 1.0, "{after}");
    assert!(grown("concierge_attachment_bytes_total", "kind=\"pdf\"") >= pdf.len() as f64, "{after}");
}
