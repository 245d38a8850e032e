//! The registry's error answers (`{"errors": [{"code", "message"}]}`), read by the client and
//! classified by `refusal`: a leaf both import.

use serde::Deserialize;

/// One entry of a registry's `{"errors": [...]}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorCode {
    pub code: String,
    #[serde(default)]
    pub message: String,
}
