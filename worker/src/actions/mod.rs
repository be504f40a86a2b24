//! Running an action for the owner of a conversation, and turning what the platform says into
//! a message for the user. The user whose data is read is always the conversation's owner,
//! taken from the conversation row: no parameter can name another user.

//! `builtin` holds the platform reads written in Rust, `declarative` the `http` actions defined
//! as data, `status` the system check; this module dispatches on the handler and words failures.

mod builtin;
mod declarative;
mod status;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use concierge_shared::{
    OwnerKind,
    actions::{ActionDefinition, Builtin, Handler},
    db::conversations::Conversation,
    i18n::{ActionTexts, Locale},
};
use serde_json::Value;

use crate::{
    Context,
    platform::{PlatformError, segment},
};
use builtin::{lesson, recordings, subscription, zoom};
use declarative::declarative;
pub use status::StatusCache;
use status::system_status;

/// How an action ended, for the user and for the log.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub succeeded: bool,
    /// For the user.
    pub message: String,
    /// One line for the action log.
    pub summary: String,
    /// What the platform said, for the log and for the model's final answer.
    pub result: Option<Value>,
    pub error: Option<String>,
}

impl Outcome {
    pub(super) fn success(message: String, summary: impl Into<String>, result: Value) -> Self {
        Self { succeeded: true, message, summary: summary.into(), result: Some(result), error: None }
    }

    fn failure(texts: &ActionTexts, error: &PlatformError) -> Self {
        let message = match error {
            PlatformError::NotFound => texts.lesson_not_found.to_owned(),
            PlatformError::Malformed(_) | PlatformError::TooLarge => {
                format!("{} {}", texts.platform_malformed, texts.offer_escalation)
            }
            PlatformError::NotConfigured | PlatformError::OffHost => {
                format!("{} {}", texts.unavailable, texts.offer_escalation)
            }
            _ => format!("{} {}", texts.platform_down, texts.offer_escalation),
        };
        Self { succeeded: false, message, summary: error.to_string(), result: None, error: Some(error.to_string()) }
    }
}

/// Run `definition` with `params` for the conversation's owner.
pub async fn run(ctx: &Context, definition: &ActionDefinition, conversation: &Conversation, params: &Value) -> Outcome {
    let texts = &Locale::from_code(&conversation.locale).texts().actions;
    let user = match conversation.owner_kind {
        OwnerKind::User => conversation.owner.strip_prefix("user:").map(str::to_owned),
        OwnerKind::Visitor => None,
    };
    let Some(user) =
        user.filter(|_| definition.requires_user).or_else(|| (!definition.requires_user).then(String::new))
    else {
        return Outcome {
            succeeded: false,
            message: texts.needs_sign_in.into(),
            summary: "no signed-in user".into(),
            result: None,
            error: Some("no signed-in user".into()),
        };
    };
    let result = match definition.handler {
        Handler::Builtin(Builtin::ZoomStatus) => zoom(ctx, texts, &user).await,
        Handler::Builtin(Builtin::Subscription) => subscription(ctx, texts, &user).await,
        Handler::Builtin(Builtin::Recordings) => recordings(ctx, texts, &user, params).await,
        Handler::Builtin(Builtin::Lesson) => lesson(ctx, texts, &user, params).await,
        Handler::Builtin(Builtin::SystemStatus) => return system_status(ctx, texts).await,
        Handler::Http => match &definition.http {
            Some(http) => declarative(ctx, &http.0, &user, params).await,
            None => Err(PlatformError::NotConfigured),
        },
    };
    result.unwrap_or_else(|error| Outcome::failure(texts, &error))
}

/// Users' subscription plans, for the model's context: looked up on the platform at most every
/// five minutes per user, and given up on quickly, since an answer must not wait for them.
#[derive(Default)]
pub struct PlanCache {
    plans: Mutex<std::collections::HashMap<String, (Instant, Option<String>)>>,
}

const PLAN_TTL: Duration = Duration::from_secs(300);
/// Plans remembered at most; past this, expired ones are forgotten first, then all.
const PLANS_KEPT: usize = 10_000;
const PLAN_TIMEOUT: Duration = Duration::from_millis(800);

impl PlanCache {
    /// "Профи (active)", or `None` for visitors, users without a plan, or a slow platform.
    pub async fn plan(
        &self,
        platform: &crate::platform::PlatformClient,
        conversation: &Conversation,
    ) -> Option<String> {
        let user = conversation.owner.strip_prefix("user:").filter(|_| conversation.owner_kind == OwnerKind::User)?;
        if !platform.configured() {
            return None;
        }
        if let Some((at, plan)) = self.plans.lock().expect("plan cache").get(user)
            && at.elapsed() < PLAN_TTL
        {
            return plan.clone();
        }
        let path = format!("users/{}/subscription", segment(user));
        let plan = match tokio::time::timeout(PLAN_TIMEOUT, platform.get_value(&path)).await {
            Ok(Ok(value)) => {
                let name = value.get("plan").and_then(Value::as_str);
                let status = value.get("status").and_then(Value::as_str).unwrap_or("unknown");
                name.map(|name| format!("{name} ({status})"))
            }
            // Not cached: try again next time.
            _ => return None,
        };
        let mut plans = self.plans.lock().expect("plan cache");
        if plans.len() >= PLANS_KEPT {
            plans.retain(|_, (at, _)| at.elapsed() < PLAN_TTL);
            if plans.len() >= PLANS_KEPT {
                plans.clear();
            }
        }
        plans.insert(user.to_owned(), (Instant::now(), plan.clone()));
        plan
    }
}

/// Action definitions, read at most every few seconds: every message consults them, and they
/// change only when fixtures are loaded or an admin switches one (seen here within seconds).
#[derive(Default)]
pub struct DefinitionCache {
    cached: tokio::sync::Mutex<Option<Cached>>,
}

struct Cached {
    at: Instant,
    /// The active actions a signed-in user may run, then those anyone may.
    signed_in: Arc<[ActionDefinition]>,
    anyone: Arc<[ActionDefinition]>,
}

const DEFINITIONS_TTL: Duration = Duration::from_secs(5);

impl DefinitionCache {
    /// Active actions a caller may run (see `actions::available`), shared until the next read.
    pub async fn available(&self, pool: &sqlx::PgPool, signed_in: bool) -> sqlx::Result<Arc<[ActionDefinition]>> {
        let mut cached = self.cached.lock().await;
        let fresh = cached.as_ref().is_some_and(|c| c.at.elapsed() < DEFINITIONS_TTL);
        if !fresh {
            let all = concierge_shared::actions::list(pool).await?;
            let active: Vec<ActionDefinition> = all.into_iter().filter(|a| a.active).collect();
            // Stemmed here once, for every message matched against them until the next read.
            for definition in &active {
                definition.trigger_phrases();
            }
            let anyone: Arc<[ActionDefinition]> = active.iter().filter(|a| !a.requires_user).cloned().collect();
            *cached = Some(Cached { at: Instant::now(), signed_in: active.into(), anyone });
        }
        let cached = cached.as_ref().expect("filled above");
        Ok(if signed_in { cached.signed_in.clone() } else { cached.anyone.clone() })
    }
}
