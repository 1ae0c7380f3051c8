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

    /// The pile numbers of a file in the allowlist's format (for `--tls-only-piles`).
    pub fn piles_from_file(path: &Path) -> anyhow::Result<HashSet<PileNo>> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse_piles(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Self::parse_piles(text).map(LoginPolicy::Allowlist)
    }

    fn parse_piles(text: &str) -> anyhow::Result<HashSet<PileNo>> {
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
        Ok(piles)
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
