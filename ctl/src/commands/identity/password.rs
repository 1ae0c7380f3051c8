//! Where passwords come from: the first line of stdin (`--password-stdin`, for scripts),
//! or typed at the terminal without echo. Never from a flag's value, which other users
//! can read in `ps` and which shells keep in their history.

use std::io::{self, BufRead, IsTerminal, Read};

use crate::cli::Failure;

/// The most of stdin read for a password: a line longer than this is not one.
pub const MAX_LINE: u64 = 4096;

/// The process's stdin and terminal, as the password readers see them (a fake in tests).
pub trait Console {
    /// Whether stdin is a terminal (then pylonctl asks, without echo).
    fn stdin_is_terminal(&self) -> bool;
    /// The first line of stdin with its line ending, reading at most `limit` bytes; empty
    /// when stdin is.
    fn read_stdin_line(&mut self, limit: u64) -> io::Result<String>;
    /// Shows `prompt` on the terminal and reads a line typed there, without echo.
    fn prompt_password(&mut self, prompt: &str) -> io::Result<String>;
}

/// The process's own stdin and terminal.
#[derive(Debug, Default)]
pub struct ProcessConsole;

impl Console for ProcessConsole {
    fn stdin_is_terminal(&self) -> bool {
        io::stdin().is_terminal()
    }

    fn read_stdin_line(&mut self, limit: u64) -> io::Result<String> {
        let mut line = String::new();
        io::stdin().lock().take(limit).read_line(&mut line)?;
        Ok(line)
    }

    fn prompt_password(&mut self, prompt: &str) -> io::Result<String> {
        rpassword::prompt_password(prompt)
    }
}

/// How to ask for a password.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// What the terminal prompt says, e.g. `Password for ana: `.
    pub prompt: &'a str,
    /// Ask twice and compare (a new password), or once (logging in).
    pub confirm: bool,
    /// `--password-stdin` was given.
    pub from_stdin: bool,
    /// The command again with `--password-stdin`, for the error when there is no terminal.
    pub example: &'a str,
}

/// A password: typed at the terminal when stdin is one (twice when `ask.confirm`), else
/// the first line of stdin with its line ending removed when `ask.from_stdin`; refused
/// otherwise, as when it is empty.
pub fn read_password(console: &mut dyn Console, ask: Ask<'_>) -> Result<String, Failure> {
    if console.stdin_is_terminal() {
        let first = prompt(console, ask.prompt)?;
        if first.is_empty() {
            return Err(Failure::BadInput(
                "the password is empty: nothing was sent".into(),
            ));
        }
        if ask.confirm {
            let again = prompt(console, "Type it again: ")?;
            if again != first {
                return Err(Failure::BadInput(
                    "the two passwords typed differ: nothing was sent; try again".into(),
                ));
            }
        }
        return Ok(first);
    }
    if !ask.from_stdin {
        return Err(Failure::BadInput(format!(
            "no password: stdin is not a terminal, so pylonctl cannot ask for one. Give it as \
             the first line of stdin with --password-stdin, e.g.\n  {}",
            ask.example
        )));
    }
    let line = console
        .read_stdin_line(MAX_LINE)
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => {
                Failure::BadInput("--password-stdin: the first line of stdin is not UTF-8".into())
            }
            _ => Failure::Other(anyhow::anyhow!("cannot read the password from stdin: {e}")),
        })?;
    if line.is_empty() {
        return Err(Failure::BadInput(
            "--password-stdin: stdin is empty; give the password as its first line".into(),
        ));
    }
    let password = match line.strip_suffix('\n') {
        Some(rest) => rest.strip_suffix('\r').unwrap_or(rest),
        None if line.len() as u64 >= MAX_LINE => {
            return Err(Failure::BadInput(format!(
                "--password-stdin: the first line of stdin is longer than {MAX_LINE} bytes, \
                 which is not a password"
            )))
        }
        None => &line,
    };
    if password.is_empty() {
        return Err(Failure::BadInput(
            "--password-stdin: the first line of stdin is empty; it must be the password".into(),
        ));
    }
    Ok(password.to_owned())
}

fn prompt(console: &mut dyn Console, text: &str) -> Result<String, Failure> {
    console.prompt_password(text).map_err(|e| {
        Failure::Other(anyhow::anyhow!(
            "cannot read the password from the terminal: {e}"
        ))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A console whose stdin holds `stdin`, and whose terminal (if `terminal`) types the
    /// `typed` lines in turn; it keeps the prompts shown.
    #[derive(Debug, Default)]
    pub(crate) struct FakeConsole {
        pub(crate) terminal: bool,
        pub(crate) stdin: Vec<u8>,
        pub(crate) typed: VecDeque<String>,
        pub(crate) prompts: Vec<String>,
    }

    impl FakeConsole {
        pub(crate) fn piped(stdin: &str) -> Self {
            FakeConsole {
                stdin: stdin.as_bytes().to_vec(),
                ..Self::default()
            }
        }

        pub(crate) fn terminal(typed: &[&str]) -> Self {
            FakeConsole {
                terminal: true,
                typed: typed.iter().map(|t| t.to_string()).collect(),
                ..Self::default()
            }
        }
    }

    impl Console for FakeConsole {
        fn stdin_is_terminal(&self) -> bool {
            self.terminal
        }

        fn read_stdin_line(&mut self, limit: u64) -> io::Result<String> {
            let mut line = String::new();
            self.stdin.as_slice().take(limit).read_line(&mut line)?;
            Ok(line)
        }

        fn prompt_password(&mut self, prompt: &str) -> io::Result<String> {
            self.prompts.push(prompt.to_owned());
            self.typed
                .pop_front()
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no more typing"))
        }
    }

    fn ask(from_stdin: bool, confirm: bool) -> Ask<'static> {
        Ask {
            prompt: "Password: ",
            confirm,
            from_stdin,
            example: "pylonctl login --password-stdin < pw",
        }
    }

    #[test]
    fn stdin_gives_its_first_line_without_the_line_ending() {
        for (stdin, want) in [
            ("correct horse battery\n", "correct horse battery"),
            ("correct horse battery\r\n", "correct horse battery"),
            ("no newline at all", "no newline at all"),
            (" spaces stay \nsecond line\n", " spaces stay "),
        ] {
            let mut console = FakeConsole::piped(stdin);
            assert_eq!(
                read_password(&mut console, ask(true, true)).unwrap(),
                want,
                "{stdin:?}"
            );
            assert!(console.prompts.is_empty());
        }
    }

    #[test]
    fn bad_stdin_is_refused_as_bad_input() {
        for (stdin, why) in [
            ("", "stdin is empty"),
            ("\n", "first line of stdin is empty"),
            ("\r\nsecret\n", "first line of stdin is empty"),
        ] {
            let err = read_password(&mut FakeConsole::piped(stdin), ask(true, false)).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(why), "{stdin:?}: {err}");
        }
        let long = "x".repeat(MAX_LINE as usize + 10);
        let err = read_password(&mut FakeConsole::piped(&long), ask(true, false)).unwrap_err();
        assert!(err.to_string().contains("longer than 4096 bytes"), "{err}");
        let mut console = FakeConsole {
            stdin: vec![0xff, 0xfe, b'\n'],
            ..FakeConsole::default()
        };
        let err = read_password(&mut console, ask(true, false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--password-stdin: the first line of stdin is not UTF-8"
        );
    }

    #[test]
    fn without_a_terminal_or_the_flag_there_is_no_password() {
        let err = read_password(&mut FakeConsole::piped("secret\n"), ask(false, true)).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string()
                .ends_with("--password-stdin, e.g.\n  pylonctl login --password-stdin < pw"),
            "{err}"
        );
    }

    #[test]
    fn a_terminal_is_asked_once_or_twice_without_echo() {
        let mut console = FakeConsole::terminal(&["s3cret-s3cret", "s3cret-s3cret"]);
        assert_eq!(
            read_password(&mut console, ask(false, true)).unwrap(),
            "s3cret-s3cret"
        );
        assert_eq!(console.prompts, ["Password: ", "Type it again: "]);
        // --password-stdin at a terminal asks too, rather than read an echoed line.
        let mut console = FakeConsole::terminal(&["s3cret-s3cret"]);
        assert_eq!(
            read_password(&mut console, ask(true, false)).unwrap(),
            "s3cret-s3cret"
        );
        assert_eq!(console.prompts, ["Password: "]);

        let mut console = FakeConsole::terminal(&["one-password", "another-one"]);
        let err = read_password(&mut console, ask(false, true)).unwrap_err();
        assert_eq!(
            (err.exit_code(), err.to_string()),
            (
                2,
                "the two passwords typed differ: nothing was sent; try again".into()
            )
        );
        let err = read_password(&mut FakeConsole::terminal(&[""]), ask(false, true)).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = read_password(&mut FakeConsole::terminal(&[]), ask(false, true)).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err
            .to_string()
            .starts_with("cannot read the password from the terminal"));
    }
}
