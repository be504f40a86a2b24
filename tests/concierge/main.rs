//! Integration tests of the whole system against a real PostgreSQL.

mod bad_input;
mod conversations;
mod helpers;
mod jobs;
mod knowledge;
mod messaging;
mod ownership;
mod processes;
