//! Errors as text for logs and answers.

/// An error with every cause after it, `a: b: c` (many libraries' own Display says only
/// "error connecting to server" and keeps the reason in the source chain).
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_cause_is_named() {
        let inner = std::io::Error::other("refused");
        let outer = std::io::Error::other(inner);
        assert_eq!(super::with_causes(&outer), "refused");
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("cannot connect")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("refused"));
        assert_eq!(super::with_causes(&e), "cannot connect: refused");
    }
}
