//! What may be written about a request or a transport error: never a credential. URLs lose their query
//! (SAS tokens, presigned signatures) and user information; credential headers are redacted.

/// A transport error in words: its message and every cause below it (where TLS and connection details
/// live), without its URL, whose query may carry a credential (a SAS token).
pub fn describe_error(error: &reqwest::Error) -> String {
    let mut text = chain_in_words(error);
    if let Some(url) = error.url() {
        text = text.replace(&format!(" for url ({})", url.as_str()), "").replace(url.as_str(), "");
    }
    text
}

/// Headers that carry credentials (or signatures made with them): never written anywhere.
const SECRET_HEADERS: [&str; 5] =
    ["authorization", "proxy-authorization", "cookie", "x-amz-security-token", "x-ms-copy-source-authorization"];

/// Headers as `name: value` pairs for a log line, with every credential-bearing value redacted.
pub fn redacted_headers(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .iter()
        .map(|(name, value)| {
            let shown = if SECRET_HEADERS.contains(&name.as_str()) {
                "<redacted>"
            } else {
                value.to_str().unwrap_or("<binary>")
            };
            format!("{name}: {shown}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A URL without its query string or user information (where SAS tokens and passwords live).
pub fn without_query(url: &url::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// A transport failure (no answer, a broken connection, a refused certificate), kept with its causes
/// for the error chain, its URL removed first (a query may carry a credential). Shown as the whole
/// chain in words, so that a message printed on its own says everything.
#[derive(Debug, Clone)]
pub struct TransportError {
    text: String,
    cause: std::sync::Arc<reqwest::Error>,
}

impl TransportError {
    pub fn new(error: reqwest::Error) -> TransportError {
        let error = error.without_url();
        TransportError { text: describe_error(&error), cause: std::sync::Arc::new(error) }
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.cause.as_ref())
    }
}

/// An error and its causes as one line, each cause added only where the words before it do not
/// already say it (a message that shows its cause is not followed by it again).
pub fn chain_in_words(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn a_chain_says_each_cause_once() {
        let error = Outer(Inner(std::io::Error::other("refused")));
        assert_eq!(chain_in_words(&error), "outer: inner: refused");
    }
}
