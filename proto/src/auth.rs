//! Bearer tokens on our HTTP and gRPC APIs (`Authorization: Bearer <token>`).

/// Whether the `Authorization` header value presents `expected`. The comparison takes
/// the same time wherever the tokens differ, and whatever their lengths.
pub fn bearer_matches(header: Option<&str>, expected: &str) -> bool {
    header
        .and_then(|v| v.strip_prefix("Bearer "))
        // An empty configured token would let anyone in: it matches nothing.
        .is_some_and(|presented| !expected.is_empty() && same_token(presented, expected))
}

/// A gRPC request carrying `token` (if any) as `authorization: Bearer <token>`.
pub fn with_bearer<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = token.and_then(|t| format!("Bearer {t}").parse().ok()) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Compares SHA-256 digests of the two tokens, every byte of them: the time taken tells
/// nothing about where they differ, nor how long the expected token is.
fn same_token(presented: &str, expected: &str) -> bool {
    use ring::digest::{digest, SHA256};
    let (a, b) = (
        digest(&SHA256, presented.as_bytes()),
        digest(&SHA256, expected.as_bytes()),
    );
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_whole_token_passes() {
        assert!(bearer_matches(Some("Bearer abc"), "abc"));
        assert!(!bearer_matches(Some("Bearer abd"), "abc"));
        assert!(!bearer_matches(Some("Bearer abcd"), "abc"));
        assert!(!bearer_matches(Some("abc"), "abc"));
        assert!(!bearer_matches(None, "abc"));
        assert!(!bearer_matches(Some("Bearer "), "abc"));
        assert!(!bearer_matches(Some("Bearer abc "), "abc"));
        assert!(
            !bearer_matches(Some("Bearer "), ""),
            "an empty token lets no one in"
        );
    }
}
