//! Integration tests of the whole system against a real PostgreSQL.

mod actions;
mod api_doc;
mod bad_input;
mod browser;
mod conversations;
mod embeddings;
mod eval;
mod fake_embeddings;
mod fake_llm;
mod fake_telegram;
mod helpers;
mod human;
mod jobs;
mod knowledge;
mod limits;
mod llm;
mod messaging;
mod metrics;
mod ownership;
mod pages;
mod privacy;
mod processes;
mod streams;
mod telegram;
mod tokens;
mod web_unit;
