//! The language model's settings: as given ([`AiSettings`]) and as the processes use them
//! ([`AiConfig`]). Without a provider key the offline engine decides.

use std::{path::PathBuf, time::Duration};

use clap::{ArgAction, Args, ValueEnum};

use crate::secret::Secret;

/// The language model's settings as given.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Language model (environment variables)")]
pub struct AiSettings {
    /// Which model decides. Default: the provider whose key is set (DEEPSEEK_API_KEY, then
    /// OPENAI_API_KEY), else offline (the offline engine, no model).
    #[arg(long, env = "CONCIERGE_AI_PROVIDER", value_enum)]
    pub ai_provider: Option<Provider>,
    /// DeepSeek's API key.
    #[arg(long, env = "DEEPSEEK_API_KEY", hide_env_values = true)]
    pub deepseek_api_key: Option<Secret>,
    /// OpenAI's API key (or that of another OpenAI-compatible server).
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<Secret>,
    /// Any OpenAI-compatible server (vLLM, Ollama, llama.cpp...). Default:
    /// https://api.deepseek.com/v1 for deepseek, https://api.openai.com/v1 otherwise.
    #[arg(long, env = "CONCIERGE_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// The model name. Default: deepseek-chat for deepseek, gpt-4o-mini otherwise.
    #[arg(long, env = "CONCIERGE_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// One model request, streamed answer included, in seconds.
    #[arg(long, env = "CONCIERGE_LLM_TIMEOUT_SECS", default_value_t = 30)]
    pub llm_timeout_secs: u64,
    /// Retries of a 429 (after its Retry-After), a 5xx or a transport error.
    #[arg(long, env = "CONCIERGE_LLM_MAX_RETRIES", default_value_t = 2)]
    pub llm_max_retries: u32,
    /// Stream answers to the widget token by token (true or false).
    #[arg(long, env = "CONCIERGE_LLM_STREAM", default_value_t = true, action = ArgAction::Set)]
    pub llm_stream: bool,
    /// Tokens one conversation may spend; after that it is answered offline.
    #[arg(long, env = "CONCIERGE_LLM_CONVERSATION_TOKENS", default_value_t = 60_000)]
    pub llm_conversation_tokens: i64,
    /// Tokens all conversations may spend per UTC day; after that they are answered offline.
    #[arg(long, env = "CONCIERGE_LLM_DAILY_TOKENS", default_value_t = 5_000_000)]
    pub llm_daily_tokens: i64,
    /// Tokens one principal (a platform user or a visitor), all their conversations together,
    /// may spend per UTC day; after that their messages are answered offline.
    #[arg(long, env = "CONCIERGE_LLM_PRINCIPAL_DAILY_TOKENS", default_value_t = 200_000)]
    pub llm_principal_daily_tokens: i64,
    /// After 3 failed calls in a row, how long new messages are answered offline before the
    /// provider is tried again, in seconds.
    #[arg(long, env = "CONCIERGE_LLM_BREAKER_COOLDOWN_SECS", default_value_t = 30)]
    pub llm_breaker_cooldown_secs: u64,
    /// How the model returns its decision: tools (tool calls; OpenAI, DeepSeek), json_schema
    /// (output constrained to one JSON schema; llama.cpp, Ollama, vLLM) or json_object (JSON
    /// mode, the prompt states the shape; DeepSeek's JSON mode).
    #[arg(long, env = "CONCIERGE_LLM_DECISION_FORMAT", value_enum, default_value_t = DecisionFormat::Tools)]
    pub llm_decision_format: DecisionFormat,
    /// Estimated tokens of one decision prompt (system prompt, decision format, context,
    /// passages, history); passages and history are cut to fit.
    #[arg(long, env = "CONCIERGE_LLM_PROMPT_TOKENS", default_value_t = 1_200)]
    pub llm_prompt_tokens: usize,
    /// Send the user's images to the model as image parts (1 or true), for models that take
    /// image input; otherwise the model is told that the user attached a screenshot.
    #[arg(long, env = "CONCIERGE_LLM_VISION", default_value_t = false, action = ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub llm_vision: bool,
    /// The versioned system prompt (`system.md`).
    #[arg(long, env = "CONCIERGE_PROMPTS_DIR", default_value = "prompts")]
    pub prompts_dir: PathBuf,
}

/// Which LLM answers, and its limits.
#[derive(Debug, Clone)]
pub struct AiConfig {
    pub provider: Provider,
    /// Any OpenAI-compatible server, without a trailing slash.
    pub base_url: String,
    pub model: String,
    /// The provider's key; local servers may need none.
    pub api_key: Option<Secret>,
    /// One request, including a streamed answer.
    pub timeout: Duration,
    /// Retries of a 429/5xx/transport failure.
    pub max_retries: u32,
    /// Stream answers token by token to the widget.
    pub stream: bool,
    /// Tokens one conversation may spend.
    pub conversation_token_budget: i64,
    /// Tokens all conversations may spend per UTC day.
    pub daily_token_budget: i64,
    /// Tokens one principal's conversations together may spend per UTC day, so that opening
    /// new conversations does not buy a fresh conversation budget.
    pub principal_daily_token_budget: i64,
    /// The versioned prompts.
    pub prompts_dir: PathBuf,
    /// After 3 failed calls in a row, how long new messages are answered offline.
    pub breaker_cooldown: Duration,
    /// How the model returns its decision.
    pub decision_format: DecisionFormat,
    /// Estimated tokens of one decision prompt; passages and history are cut to fit.
    pub prompt_tokens: usize,
    /// The user's images go to the model as image parts (`CONCIERGE_LLM_VISION`).
    pub vision: bool,
}

/// How the model returns its decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecisionFormat {
    /// One tool call among `answer`, `clarify`, `escalate`, `run_action`.
    #[value(name = "tools")]
    Tools,
    /// `response_format: json_schema`: one object whose `decision` field names the kind.
    #[value(name = "json_schema")]
    JsonSchema,
    /// `response_format: json_object`: the same object, its shape stated in the prompt.
    #[value(name = "json_object")]
    JsonObject,
}

impl DecisionFormat {
    pub const ALL: [DecisionFormat; 3] =
        [DecisionFormat::Tools, DecisionFormat::JsonSchema, DecisionFormat::JsonObject];

    /// The setting's value, also stored in the decision's metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionFormat::Tools => "tools",
            DecisionFormat::JsonSchema => "json_schema",
            DecisionFormat::JsonObject => "json_object",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Provider {
    Deepseek,
    Openai,
    Offline,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Deepseek => "deepseek",
            Provider::Openai => "openai",
            Provider::Offline => "offline",
        }
    }
}

impl AiSettings {
    pub(super) fn resolve(self) -> AiConfig {
        let provider = match self.ai_provider {
            Some(provider) => provider,
            None if self.deepseek_api_key.is_some() => Provider::Deepseek,
            None if self.openai_api_key.is_some() => Provider::Openai,
            None => Provider::Offline,
        };
        let (default_url, default_model, api_key) = match provider {
            Provider::Deepseek => ("https://api.deepseek.com/v1", "deepseek-chat", self.deepseek_api_key),
            Provider::Openai | Provider::Offline => ("https://api.openai.com/v1", "gpt-4o-mini", self.openai_api_key),
        };
        AiConfig {
            provider,
            base_url: self.llm_base_url.as_deref().unwrap_or(default_url).trim_end_matches('/').into(),
            model: self.llm_model.unwrap_or_else(|| default_model.into()),
            api_key,
            timeout: Duration::from_secs(self.llm_timeout_secs),
            max_retries: self.llm_max_retries,
            stream: self.llm_stream,
            conversation_token_budget: self.llm_conversation_tokens,
            daily_token_budget: self.llm_daily_tokens,
            principal_daily_token_budget: self.llm_principal_daily_tokens,
            prompts_dir: self.prompts_dir,
            breaker_cooldown: Duration::from_secs(self.llm_breaker_cooldown_secs),
            decision_format: self.llm_decision_format,
            prompt_tokens: self.llm_prompt_tokens,
            vision: self.llm_vision,
        }
    }
}

impl AiConfig {
    /// No model: the offline engine decides.
    pub fn offline() -> Self {
        Self {
            provider: Provider::Offline,
            base_url: String::new(),
            model: String::new(),
            api_key: None,
            timeout: Duration::from_secs(30),
            max_retries: 2,
            stream: true,
            conversation_token_budget: 60_000,
            daily_token_budget: 5_000_000,
            principal_daily_token_budget: 200_000,
            prompts_dir: "prompts".into(),
            breaker_cooldown: Duration::from_secs(30),
            decision_format: DecisionFormat::Tools,
            prompt_tokens: 1_200,
            vision: false,
        }
    }
}
