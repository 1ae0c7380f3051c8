//! Who operates Pylon, through the control plane's identity API
//! ([`pylon_proto::api::identity`]): `users` and `tokens` (admin), and `login`, `logout`
//! and `whoami` (anyone with a token, or a password for `login`). Passwords come from a
//! terminal prompt or from stdin ([`password`]), never from a flag.

pub mod password;

use std::io::Write;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use pylon_proto::api::identity::{
    IssuedToken, LoginInput, TokenInfo, TokenInput, User, UserChange, UserInput,
};
use pylon_proto::auth::{Principal, Role};
use serde::de::IgnoredAny;

use self::password::{read_password, Ask, Console};
use super::app::parse_text;
use super::{ConnectOptions, Ctx, OutputFormat};
use crate::cli::Failure;
use crate::client::{path_segment, ClientError};
use crate::render::identity as render;

pub const USERS_ABOUT: &str = "\
Manage the people who operate Pylon (users). Each user has a name, a password and one
role, which says what they may do:
  viewer    sees everything but secrets; changes nothing
  operator  runs the network: commands to piles, drain and undrain edges, alarms
  finance   runs the money: accounts, top-ups, refunds, tariffs, reports
  admin     everything, including users, tokens, card keys and the audit log
A user gets a token by logging in (`pylonctl login`, a session of 12 hours), or from an
admin (`pylonctl tokens create`, for a program or a longer time). Every change is written
to the audit log (`pylonctl audit list`).

Needs a token with the admin role. On a new platform, create the first admin with the
control plane's bootstrap admin token (pylon-control --admin-token, given to pylonctl
with --token or PYLON_TOKEN); that token stops working once an enabled admin user exists,
so log in as that admin (`pylonctl login --user NAME`) afterwards.

Examples:
  pylonctl users list
  pylonctl users create ana --role admin
  pylonctl users create ci-bot --role viewer --password-stdin < password.txt
  pylonctl users set ana --role operator
  pylonctl users disable ana
  pylonctl users remove ana";

const USERS_LIST_ABOUT: &str = "\
List the users: name, role, whether they are disabled, and when they were created (UTC).
Needs the admin role.

Examples:
  pylonctl users list
  pylonctl users list -o json | jq -r '.[] | select(.role == \"admin\") | .name'";

const USERS_CREATE_ABOUT: &str = "\
Add a user with a role. The password (at least 12 characters) is asked for twice at the
terminal, without echo; in a script, give it as the first line of stdin with
--password-stdin. It is never taken from a flag: other users could read it in `ps`.
The control plane keeps only a hash of it. Needs the admin role.

Examples:
  pylonctl users create ana --role operator
  pylonctl users create ci-bot --role viewer --password-stdin < password.txt
  printf '%s\\n' \"$PASSWORD\" | pylonctl users create bo --role finance --password-stdin";

const USERS_SET_ABOUT: &str = "\
Change a user's role, password, or both. A new password is read from the first line of
stdin with --password-stdin (at a terminal, it is asked for twice without echo instead).
Lowering the role stops the user's tokens that carry more than the new role; changing
the password keeps their tokens working (revoke them with `pylonctl tokens revoke`).
Needs the admin role.

Examples:
  pylonctl users set ana --role finance
  pylonctl users set ana --password-stdin
  pylonctl users set ci-bot --password-stdin < new-password.txt";

const USERS_DISABLE_ABOUT: &str = "\
Disable a user: they can no longer log in, and none of their tokens work, until
`pylonctl users enable`. Nothing is deleted. Needs the admin role.

Examples:
  pylonctl users disable ana";

const USERS_ENABLE_ABOUT: &str = "\
Enable a disabled user again: they can log in, and their tokens that are neither revoked
nor expired work again. Needs the admin role.

Examples:
  pylonctl users enable ana";

const USERS_REMOVE_ABOUT: &str = "\
Remove a user for good and revoke every token of theirs. Their entries in the audit log
stay. To stop a user for a while, `pylonctl users disable` them instead. Needs the admin
role.

Examples:
  pylonctl users remove ana";

pub const TOKENS_ABOUT: &str = "\
Manage API tokens: long-lived tokens an admin makes for a user, to give to a program
(Grafana, a nightly export, CI) or to a person who works from scripts. A token carries
its user's role or a smaller one, and works while it is neither revoked nor expired and
its user is enabled. Its text (pylon_<id>_<secret>) is shown once, when it is made; the
control plane keeps only a hash, and lists show the id. Session tokens from `pylonctl
login` are listed too. Needs a token with the admin role.

Examples:
  pylonctl tokens list
  pylonctl tokens list --user ana
  pylonctl tokens create --user ana --name grafana --role viewer --expires-in-days 365
  pylonctl tokens revoke 0123456789ab";

const TOKENS_LIST_ABOUT: &str = "\
List the tokens, oldest first: id, name, user, role, kind (api: made by an admin;
session: from `pylonctl login`), when made, when it expires and when it was revoked
(UTC). Never the token's text. Needs the admin role.

Examples:
  pylonctl tokens list
  pylonctl tokens list --user ana -o json";

const TOKENS_CREATE_ABOUT: &str = "\
Make an API token for a user and print it. Its text is shown this once and never again:
copy it into the program's settings, or into PYLON_TOKEN or the config file. With
-o json, the reply as it is ({\"token\": ..., \"info\": ...}). Needs the admin role.

Examples:
  pylonctl tokens create --user ana --name laptop
  pylonctl tokens create --user ci-bot --name nightly-export --role viewer --expires-in-days 0
  pylonctl tokens create --user ana --name grafana -o json | jq -r .token";

const TOKENS_REVOKE_ABOUT: &str = "\
Revoke a token: it stops working at once, for good. It stays in `pylonctl tokens list`,
marked revoked. The id is the 12 hex digits `tokens list` shows (the part after pylon_
in the token's text). Needs the admin role.

Examples:
  pylonctl tokens revoke 0123456789ab";

pub const LOGIN_ABOUT: &str = "\
Log in with a user's name and password, and print a session token (valid for 12 hours)
with how to use it: `export PYLON_TOKEN=...`. The password is asked for at the terminal
without echo; in a script, give it as the first line of stdin with --password-stdin. It
is never taken from a flag. No token is needed to log in.

Examples:
  pylonctl login --user ana
  export PYLON_TOKEN=$(pylonctl login --user ana -o json | jq -r .token)
  pylonctl login --user ci-bot --password-stdin < password.txt";

pub const LOGOUT_ABOUT: &str = "\
End the session of the token in use (--token, PYLON_TOKEN or the config file): a session
token from `pylonctl login` stops working. An API token from `pylonctl tokens create` is
not revoked by logging out (`pylonctl tokens revoke ID` does that). Any role.

Examples:
  pylonctl logout";

pub const WHOAMI_ABOUT: &str = "\
Show who the token in use belongs to: the user, the role it carries and the token's id.
Any role.

Examples:
  pylonctl whoami
  pylonctl whoami --token \"$OTHER_TOKEN\" -o json";

/// `--role`: one of the four roles, with what each may do in `--help`.
pub fn role_parser() -> impl TypedValueParser<Value = Role> {
    PossibleValuesParser::new([
        PossibleValue::new("viewer").help("sees everything but secrets; changes nothing"),
        PossibleValue::new("operator").help("commands to piles, drain and undrain, alarms"),
        PossibleValue::new("finance").help("accounts, top-ups, refunds, tariffs, reports"),
        PossibleValue::new("admin").help("everything, including users, tokens, the audit log"),
    ])
    .try_map(|s| s.parse::<Role>())
}

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    pub command: UsersCommand,
    #[command(flatten)]
    pub connect: ConnectOptions,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum UsersCommand {
    /// List the users: name, role, disabled, created (needs admin).
    #[command(long_about = USERS_LIST_ABOUT)]
    List,
    /// Add a user with a role; the password is asked for, or read from stdin (needs admin).
    #[command(long_about = USERS_CREATE_ABOUT)]
    Create {
        /// The new user's name: 1 to 64 letters, digits, '.', '-', '_' or '@'.
        name: String,
        /// What the user may do.
        #[arg(long, value_name = "ROLE", value_parser = role_parser())]
        role: Role,
        /// Read the password from the first line of stdin (for scripts)
        ///
        /// The line's ending (\n or \r\n) is removed; nothing else is. Without
        /// this flag, the password is asked for twice at the terminal, without
        /// echo.
        #[arg(long, verbatim_doc_comment)]
        password_stdin: bool,
    },
    /// Change a user's role or password (needs admin).
    #[command(long_about = USERS_SET_ABOUT)]
    Set {
        /// The user's name, as `pylonctl users list` shows it.
        name: String,
        /// The user's new role.
        #[arg(long, value_name = "ROLE", value_parser = role_parser())]
        role: Option<Role>,
        /// Set a new password, read from the first line of stdin
        ///
        /// The line's ending (\n or \r\n) is removed; nothing else is. At a
        /// terminal, the password is asked for twice without echo instead.
        #[arg(long, verbatim_doc_comment)]
        password_stdin: bool,
    },
    /// Stop a user: no logging in, none of their tokens work (needs admin).
    #[command(long_about = USERS_DISABLE_ABOUT)]
    Disable {
        /// The user's name, as `pylonctl users list` shows it.
        name: String,
    },
    /// Let a disabled user log in and use their tokens again (needs admin).
    #[command(long_about = USERS_ENABLE_ABOUT)]
    Enable {
        /// The user's name, as `pylonctl users list` shows it.
        name: String,
    },
    /// Remove a user and revoke all their tokens (needs admin).
    #[command(long_about = USERS_REMOVE_ABOUT)]
    Remove {
        /// The user's name, as `pylonctl users list` shows it.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    pub command: TokensCommand,
    #[command(flatten)]
    pub connect: ConnectOptions,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum TokensCommand {
    /// List tokens: id, name, user, role, kind, created, expires, revoked (needs admin).
    #[command(long_about = TOKENS_LIST_ABOUT)]
    List {
        /// Only this user's tokens.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Make an API token for a user; its text is shown once (needs admin).
    #[command(long_about = TOKENS_CREATE_ABOUT)]
    Create {
        /// The user the token acts as.
        #[arg(long, value_name = "NAME")]
        user: String,
        /// What the token is for, e.g. grafana or "nightly export" (1 to 100 characters).
        #[arg(long, value_name = "TEXT", value_parser = parse_text)]
        name: String,
        /// The role the token carries [default: the user's]; at most the user's.
        #[arg(long, value_name = "ROLE", value_parser = role_parser())]
        role: Option<Role>,
        /// Days until the token expires; 0: never [default: 90].
        #[arg(long, value_name = "N")]
        expires_in_days: Option<u32>,
    },
    /// Revoke a token: it stops working at once (needs admin).
    #[command(long_about = TOKENS_REVOKE_ABOUT)]
    Revoke {
        /// The token's id: 12 hex digits, as `pylonctl tokens list` shows it.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The user to log in as [default: $USER]
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Read the password from the first line of stdin (for scripts)
    ///
    /// The line's ending (\n or \r\n) is removed; nothing else is. Without
    /// this flag, the password is asked for at the terminal, without echo.
    #[arg(long, verbatim_doc_comment)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub connect: ConnectOptions,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub connect: ConnectOptions,
}

#[derive(Debug, Args)]
pub struct WhoamiArgs {
    #[command(flatten)]
    pub connect: ConnectOptions,
}

/// What a command was about, to explain `not_found` and `exists` in its terms.
#[derive(Debug, Clone, Copy)]
enum About<'a> {
    User(&'a str),
    Token(&'a str),
}

/// The identity API's errors, said so that an operator knows what to do next; others
/// keep their messages (and exit statuses).
fn explain(e: ClientError, about: About<'_>) -> Failure {
    let text = match (e.code(), about) {
        (Some("not_found"), About::User(name)) => format!(
            "there is no user {name}; `pylonctl users list` lists the users, `pylonctl users \
             create {name} --role ROLE` adds one"
        ),
        (Some("not_found"), About::Token(id)) => {
            format!("there is no token {id}; `pylonctl tokens list` lists the tokens by id")
        }
        (Some("exists"), About::User(name)) => format!(
            "a user named {name} exists already; `pylonctl users set {name}` changes their \
             role or password"
        ),
        _ => return Failure::from(e),
    };
    Failure::Other(anyhow::anyhow!(text))
}

/// Runs `pylonctl users ...`.
pub fn run_users(
    args: UsersArgs,
    env: &dyn Fn(&str) -> Option<String>,
    console: &mut dyn Console,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ctx = Ctx::new(&args.connect, None, env)?;
    match args.command {
        UsersCommand::List => {
            let users: Vec<User> = ctx.client.get("/v1/admin/users", &[])?;
            ctx.emit(out, &users, |u| render::users(u))
        }
        UsersCommand::Create {
            name,
            role,
            password_stdin,
        } => {
            let prompt = format!("Password for the new user {name}: ");
            let example = format!(
                "pylonctl users create {name} --role {} --password-stdin < password.txt",
                role.as_str()
            );
            let password = read_password(
                console,
                Ask {
                    prompt: &prompt,
                    confirm: true,
                    from_stdin: password_stdin,
                    example: &example,
                },
            )?;
            let input = UserInput {
                name: name.clone(),
                role,
                password,
            };
            let user: User = ctx
                .client
                .post_json("/v1/admin/users", &input)
                .map_err(|e| explain(e, About::User(&name)))?;
            ctx.emit(out, &user, render::user_created)
        }
        UsersCommand::Set {
            name,
            role,
            password_stdin,
        } => {
            if role.is_none() && !password_stdin {
                return Err(Failure::BadInput(format!(
                    "nothing to change: give --role ROLE, --password-stdin or both (`pylonctl \
                     users disable|enable {name}` stop and restart a user)"
                )));
            }
            let password = if password_stdin {
                let prompt = format!("New password for {name}: ");
                let example = format!("pylonctl users set {name} --password-stdin < password.txt");
                Some(read_password(
                    console,
                    Ask {
                        prompt: &prompt,
                        confirm: true,
                        from_stdin: true,
                        example: &example,
                    },
                )?)
            } else {
                None
            };
            let change = UserChange {
                role,
                password,
                disabled: None,
            };
            let user = change_user(&ctx, &name, &change)?;
            ctx.emit(out, &user, |u| {
                render::user_changed(u, role.is_some(), password_stdin)
            })
        }
        UsersCommand::Disable { name } => set_disabled(&ctx, &name, true, out),
        UsersCommand::Enable { name } => set_disabled(&ctx, &name, false, out),
        UsersCommand::Remove { name } => {
            let path = format!("/v1/admin/users/{}", path_segment(&name));
            let _: Option<IgnoredAny> = ctx
                .client
                .delete_optional(&path)
                .map_err(|e| explain(e, About::User(&name)))?;
            // The reply has no body: JSON output prints nothing.
            if ctx.output == OutputFormat::Table {
                out.write_all(render::user_removed(&name).as_bytes())?;
            }
            Ok(())
        }
    }
}

fn change_user(ctx: &Ctx, name: &str, change: &UserChange) -> Result<User, Failure> {
    let path = format!("/v1/admin/users/{}", path_segment(name));
    ctx.client
        .put_json(&path, change)
        .map_err(|e| explain(e, About::User(name)))
}

fn set_disabled(ctx: &Ctx, name: &str, disabled: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let change = UserChange {
        disabled: Some(disabled),
        ..UserChange::default()
    };
    let user = change_user(ctx, name, &change)?;
    ctx.emit(out, &user, render::user_disabled)
}

/// Runs `pylonctl tokens ...`.
pub fn run_tokens(
    args: TokensArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ctx = Ctx::new(&args.connect, None, env)?;
    match args.command {
        TokensCommand::List { user } => {
            let mut query = Vec::new();
            if let Some(user) = &user {
                query.push(("user", user.as_str()));
            }
            let tokens: Vec<TokenInfo> = ctx.client.get("/v1/admin/tokens", &query)?;
            ctx.emit(out, &tokens, |t| render::tokens(t, user.as_deref()))
        }
        TokensCommand::Create {
            user,
            name,
            role,
            expires_in_days,
        } => {
            let input = TokenInput {
                user: user.clone(),
                name,
                role,
                expires_in_days,
            };
            let issued: IssuedToken = ctx
                .client
                .post_json("/v1/admin/tokens", &input)
                .map_err(|e| explain(e, About::User(&user)))?;
            ctx.emit(out, &issued, render::token_created)
        }
        TokensCommand::Revoke { id } => {
            let path = format!("/v1/admin/tokens/{}", path_segment(&id));
            let revoked: Option<TokenInfo> = ctx
                .client
                .delete_optional(&path)
                .map_err(|e| explain(e, About::Token(&id)))?;
            match &revoked {
                Some(info) => ctx.emit(out, info, |t| render::token_revoked(&id, Some(t))),
                None if ctx.output == OutputFormat::Table => {
                    out.write_all(render::token_revoked(&id, None).as_bytes())?;
                    Ok(())
                }
                None => Ok(()),
            }
        }
    }
}

/// Runs `pylonctl login`.
pub fn run_login(
    args: LoginArgs,
    env: &dyn Fn(&str) -> Option<String>,
    console: &mut dyn Console,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let user = args
        .user
        .or_else(|| env("USER"))
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Failure::BadInput("who is logging in? give --user NAME".into()))?;
    let ctx = Ctx::new(&args.connect, None, env)?;
    let prompt = format!("Password for {user}: ");
    let example = format!("pylonctl login --user {user} --password-stdin < password.txt");
    let password = read_password(
        console,
        Ask {
            prompt: &prompt,
            confirm: false,
            from_stdin: args.password_stdin,
            example: &example,
        },
    )?;
    let input = LoginInput {
        user: user.clone(),
        password,
    };
    let issued: IssuedToken =
        ctx.client
            .post_json_public("/v1/login", &input)
            .map_err(|e| match e.code() {
                Some("bad_login") => Failure::Other(anyhow::anyhow!(
                    "not logged in: wrong user name or password, or user {user} is disabled"
                )),
                _ => Failure::from(e),
            })?;
    ctx.emit(out, &issued, render::logged_in)
}

/// Runs `pylonctl logout`.
pub fn run_logout(
    args: LogoutArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ctx = Ctx::new(&args.connect, None, env)?;
    let _: Option<IgnoredAny> = ctx.client.post_optional("/v1/logout")?;
    // The reply has no body: JSON output prints nothing.
    if ctx.output == OutputFormat::Table {
        out.write_all(render::logged_out().as_bytes())?;
    }
    Ok(())
}

/// Runs `pylonctl whoami`.
pub fn run_whoami(
    args: WhoamiArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ctx = Ctx::new(&args.connect, None, env)?;
    let me: Principal = ctx.client.get("/v1/whoami", &[])?;
    ctx.emit(out, &me, render::principal)
}

#[cfg(test)]
mod tests;
