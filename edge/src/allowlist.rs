//! The standalone login policy: which pile numbers may log in.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Context;
use pylon_proto::ykc::PileNo;

#[derive(Debug, Clone)]
pub enum LoginPolicy {
    AllowAll,
    Allowlist(HashSet<PileNo>),
}

impl LoginPolicy {
    /// Reads a file of pile numbers, one per line; blank lines and `#` comments are skipped.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading allowlist {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in allowlist {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut piles = HashSet::new();
        for (n, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let pile = PileNo::parse(entry).map_err(|e| {
                anyhow::anyhow!("line {}: {entry:?} is not a pile number: {e}", n + 1)
            })?;
            piles.insert(pile);
        }
        Ok(LoginPolicy::Allowlist(piles))
    }

    pub fn allows(&self, pile: &PileNo) -> bool {
        match self {
            LoginPolicy::AllowAll => true,
            LoginPolicy::Allowlist(set) => set.contains(pile),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_and_blank_lines() {
        let p = LoginPolicy::parse("# piles\n32010600019236\n\n 12 # short numbers are padded\n")
            .unwrap();
        assert!(p.allows(&PileNo::parse("32010600019236").unwrap()));
        assert!(p.allows(&PileNo::parse("12").unwrap()));
        assert!(!p.allows(&PileNo::parse("13").unwrap()));
        assert!(LoginPolicy::parse("abc").is_err());
    }
}
