//! The Telegram side of the human path: topics, the outbox of posts to them, stored updates,
//! operators' mirrored messages and internal notes.
//!
//! Posts to a topic go through the outbox so that they are never lost (a post is a row before
//! it is a request) and keep their order (one sender per topic at a time, oldest row first).
//! Sending is paced per chat with a slot table shared by every worker process.
//!
//! `topics` holds each conversation's topic and its creation claim, `outbox` the posts and their
//! sender, `pacing` the per-chat send slots, `updates` the stored updates, `links` the mapping of
//! Telegram messages to web messages and `notes` the operators' internal notes, `stops` the chats the bot cannot post to (kicked, or
//! migrated to a supergroup).

mod links;
mod notes;
mod outbox;
mod pacing;
mod stops;
mod topics;
mod updates;

pub use links::*;
pub use notes::*;
pub use outbox::*;
pub use pacing::*;
pub use stops::*;
pub use topics::*;
pub use updates::*;
