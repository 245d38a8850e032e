//! What the storage and registry clients share about HTTP.

/// A transport error in words: its message and every cause below it (where TLS and connection details
/// live), without its URL, whose query may carry a credential (a SAS token).
pub fn describe_error(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" for url ({})", url.as_str()), "").replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
