//! The email job: an operator's reply, sent to the user who asked for replies by email while
//! operators were away, as a plain-text email with the operator's first name, the reply and the
//! way back to the conversation.
//!
//! The job reloads the reply and the user's choice: a reply already sent (marked by message
//! id), a choice withdrawn or a conversation erased sends nothing. The SMTP server's temporary
//! failures (4xx, connection and timeouts) are retried with backoff; its permanent refusals
//! (5xx) and a bad address are final. Every email counts in
//! `concierge_emails_total{outcome="sent"|"failed"}`.

use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::{BoxDynError, Data};
use concierge_shared::{
    config::EmailConfig,
    db::email_replies::{self, ReplyToSend},
    human::Operator,
    i18n::{Locale, fill},
    jobs::SendReplyEmail,
};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Body, Mailbox, header::ContentTransferEncoding, header::ContentType},
};

use crate::{Context, retry::Backoff};

/// The SMTP server and the sender, built once per process.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(config: &EmailConfig) -> anyhow::Result<Self> {
        // lettre's error would quote the URL, password included.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(config.smtp_url.expose())
            .map_err(|_| anyhow::anyhow!("CONCIERGE_SMTP_URL is not an SMTP URL lettre understands"))?
            .build();
        Ok(Self { transport, from: config.from.clone() })
    }
}

#[tracing::instrument(skip_all, fields(message_id = %job.message_id))]
pub async fn handle(job: SendReplyEmail, ctx: Data<Context>) -> Result<(), BoxDynError> {
    let Some(reply) = email_replies::reply_to_send(&ctx.pool, job.message_id).await.context("loading the reply")?
    else {
        // Erased with its conversation.
        return Ok(());
    };
    let Some(address) = reply.email_reply_to.as_deref() else {
        tracing::info!(conversation_id = %reply.conversation_id, "the user no longer wants replies by email");
        return Ok(());
    };
    if reply.emailed_at.is_some() {
        return Ok(());
    }
    let Some(mailer) = ctx.mailer.as_deref() else {
        count("failed");
        tracing::error!(
            conversation_id = %reply.conversation_id,
            "an operator's reply is queued for email, but CONCIERGE_SMTP_URL is not set on this worker"
        );
        return Ok(());
    };
    let message = match compose(&mailer.from, address, &reply) {
        Ok(message) => message,
        Err(error) => {
            count("failed");
            tracing::error!(conversation_id = %reply.conversation_id, error = format!("{error:#}"), "cannot write the reply's email");
            return Ok(());
        }
    };
    let backoff = Backoff { tries: ctx.max_attempts, first: Duration::from_millis(500), max: Duration::from_secs(30) };
    let permanent = |error: &lettre::transport::smtp::Error| error.is_permanent();
    match backoff.run("sending a reply by email", permanent, || mailer.transport.send(message.clone())).await {
        Ok(_) => {
            count("sent");
            tracing::info!(conversation_id = %reply.conversation_id, "an operator's reply went out by email");
            if let Err(error) = email_replies::mark_sent(&ctx.pool, job.message_id).await {
                // The email is out; running the job again would send it twice.
                tracing::warn!(%error, "cannot mark the reply as emailed");
            }
        }
        Err(error) => {
            count("failed");
            tracing::error!(conversation_id = %reply.conversation_id, %error, "the SMTP server did not take the reply's email");
        }
    }
    Ok(())
}

fn count(outcome: &'static str) {
    metrics::counter!("concierge_emails_total", "outcome" => outcome).increment(1);
}

/// The email of `reply` to `address`, plain text in the conversation's language.
fn compose(from: &Mailbox, address: &str, reply: &ReplyToSend) -> anyhow::Result<Message> {
    let texts = &Locale::from_code(&reply.locale).texts().email;
    let name = Operator::first_name(reply.operator_name.as_deref());
    let way_back = match &reply.page_url {
        Some(url) => fill(texts.link, &[("url", url)]),
        None => texts.no_link.to_owned(),
    };
    // A reply of files alone says so instead of quoting nothing.
    let mut said: Vec<String> = Vec::new();
    if !reply.content.trim().is_empty() {
        said.push(reply.content.clone());
    }
    if !reply.file_names.is_empty() {
        said.push(fill(texts.files, &[("files", &reply.file_names.join(", "))]));
    }
    let text = format!(
        "{}\n\n{}\n\n{}\n\n{way_back}\n\n-- \n{}\n",
        texts.greeting,
        fill(texts.intro, &[("name", &name)]),
        said.join("\n\n"),
        texts.footer
    );
    let to: Mailbox = address.parse().context("the stored address is not one mail can reach")?;
    // Base64 reaches every server whatever its 8-bit support, and keeps Cyrillic compact.
    let body = Body::new_with_encoding(text, ContentTransferEncoding::Base64)
        .map_err(|_| anyhow::anyhow!("the body cannot be encoded"))?;
    Ok(Message::builder()
        .from(from.clone())
        .to(to)
        .subject(texts.subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)?)
}

#[cfg(test)]
mod tests {
    use concierge_shared::ConversationId;

    use super::*;

    fn reply(page_url: Option<&str>) -> ReplyToSend {
        ReplyToSend {
            conversation_id: ConversationId::new(),
            content: "Деньги вернутся на карту за 3–5 дней.".into(),
            file_names: Vec::new(),
            operator_name: Some("Ольга".into()),
            email_reply_to: Some("anna@example.com".into()),
            page_url: page_url.map(Into::into),
            locale: "ru".into(),
            emailed_at: None,
        }
    }

    fn body_of(message: &Message) -> String {
        use base64::Engine as _;
        let formatted = String::from_utf8(message.formatted()).unwrap();
        let (_, encoded) = formatted.split_once("\r\n\r\n").unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.replace("\r\n", "")).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_email_names_the_operator_quotes_the_reply_and_links_back() {
        let from: Mailbox = "Lectio <help@lectio.ru>".parse().unwrap();
        let message = compose(&from, "anna@example.com", &reply(Some("https://lectio.ru/app"))).unwrap();
        let body = body_of(&message);
        assert!(body.contains("Ольга из поддержки Lectio"), "{body}");
        assert!(body.contains("Деньги вернутся на карту за 3–5 дней."), "{body}");
        assert!(body.contains("Продолжить разговор: https://lectio.ru/app"), "{body}");
        let headers = String::from_utf8(message.formatted()).unwrap();
        assert!(headers.contains("To: anna@example.com") && headers.contains("text/plain"), "{headers}");

        let without_page = body_of(&compose(&from, "anna@example.com", &reply(None)).unwrap());
        assert!(without_page.contains("в чате поддержки") && !without_page.contains("http"), "{without_page}");
        assert!(compose(&from, "not an address", &reply(None)).is_err());
    }

    #[test]
    fn a_reply_with_files_names_them_and_one_of_files_alone_quotes_no_empty_text() {
        let from: Mailbox = "Lectio <help@lectio.ru>".parse().unwrap();
        let mut with_files = reply(None);
        with_files.file_names = vec!["чек.pdf".into(), "screen.png".into()];
        let body = body_of(&compose(&from, "anna@example.com", &with_files).unwrap());
        assert!(body.contains("Деньги вернутся") && body.contains("приложены файлы: чек.pdf, screen.png"), "{body}");

        with_files.content = String::new();
        let body = body_of(&compose(&from, "anna@example.com", &with_files).unwrap()).replace("\r\n", "\n");
        assert!(body.contains("ответил(а) на ваше обращение:\n\nК ответу приложены файлы: чек.pdf"), "{body}");
    }
}
