//! What may be written about a request or a transport error: never a credential. URLs lose their query
//! (SAS tokens, presigned signatures) and user information; credential headers are redacted.

/// A transport error in words: its message and every cause below it (where TLS and connection details
/// live), without its URL, whose query may carry a credential (a SAS token).
pub fn describe_error(error: &reqwest::Error) -> String {
    let mut text = error_chain(error);
    if let Some(url) = error.url() {
        text = text.replace(&format!(" for url ({})", url.as_str()), "").replace(url.as_str(), "");
    }
    text
}

/// An error's message followed by each of its causes, `: `-separated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
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
