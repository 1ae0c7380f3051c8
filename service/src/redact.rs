//! Keeping secrets and card data out of logs and the audit log: JSON values under keys
//! that name them are replaced before anything is written.

use serde_json::Value;

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// Whether a JSON key names something that must not be kept in clear: card numbers and
/// passwords, VINs, tokens, keys, secrets. `physical` and `logical` are the two numbers of
/// a card in the operator API (`pylon_proto::api::revenue::CardInput`).
pub fn is_sensitive(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "card", "password", "passwd", "vin", "token", "secret", "key", "pin",
    ]
    .iter()
    .any(|word| key.contains(word))
        || matches!(key.as_str(), "physical" | "logical")
}

/// `value` with every sensitive key's value replaced.
pub fn redact(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    if is_sensitive(&k) {
                        (k, Value::String(REDACTED.into()))
                    } else {
                        (k, redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}

/// A body for the audit log: its JSON redacted; `null` when empty; a note of its size
/// when it is not JSON (kept out: it could hold anything).
pub fn json_body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => redact(v),
        Err(_) => Value::String(format!("({} bytes, not JSON)", bytes.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn card_data_and_secrets_are_replaced_at_any_depth() {
        let body = json!({
            "account": "a1",
            "amount": 500,
            "card_no": "1234567812345678",
            "physical": "D14B0A54",
            "logical": "1000000573",
            "cards": [{"number": "1"}],
            "nested": {"password": "hunter2", "vin": "LSV...", "name": "ok"},
            "list": [{"token": "t"}, 3]
        });
        let out = redact(body);
        assert_eq!(out["account"], "a1");
        assert_eq!(out["amount"], 500);
        assert_eq!(out["card_no"], REDACTED);
        assert_eq!(
            (&out["physical"], &out["logical"]),
            (&json!(REDACTED), &json!(REDACTED))
        );
        assert_eq!(out["cards"], REDACTED);
        assert_eq!(out["nested"]["password"], REDACTED);
        assert_eq!(out["nested"]["vin"], REDACTED);
        assert_eq!(out["nested"]["name"], "ok");
        assert_eq!(out["list"][0]["token"], REDACTED);
        assert!(!out.to_string().contains("1234567812345678"));
        assert_eq!(json_body(b""), Value::Null);
        assert_eq!(json_body(b"not json"), json!("(8 bytes, not JSON)"));
    }
}
