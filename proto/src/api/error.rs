//! The one error body every Pylon HTTP API answers with (4xx and 5xx):
//! `{"error": {"code": "bad_pile", "message": "..."}}`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable code, e.g. `bad_pile`, `no_edge`, `unauthorized`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            error: ErrorBody {
                code: code.into(),
                message: message.into(),
            },
        }
    }

    pub fn code(&self) -> &str {
        &self.error.code
    }

    pub fn message(&self) -> &str {
        &self.error.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_is_an_error_object_with_code_and_message() {
        let json = serde_json::to_value(ApiError::new("bad_pile", "not 14 digits")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "bad_pile", "message": "not 14 digits"}})
        );
    }
}
