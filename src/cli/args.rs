//! The `whitebeat` command line as clap reads it: the subcommands, and the settings' flags,
//! made from the one list in `config` (`settings!`) so that a flag, its environment
//! variable, its default and its help are written once.

use crate::config::{
    settings, GlobalSettings, LogLevel, PublicUrl, ServeSettings, SignupMode, SyncMode,
};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "whitebeat",
    version,
    about = "White Beat: a self-hosted chat server in one executable"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (migrates the database first).
    Serve(Box<ServeArgs>),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Create an admin account (prompts on a terminal; see --noinput for scripts).
    Createsuperuser(SuperuserArgs),
    /// Add a user to the Admin group.
    MakeAdmin { username: String },
    /// Remove a user from the Admin group (the last admin cannot be removed).
    RemoveAdmin { username: String },
    /// Set a user's password (prompted twice, or one line on stdin) and end their sessions.
    Changepassword { username: String },
    /// Stop a user from logging in and end their sessions.
    Deactivate { username: String },
    /// Let a deactivated user log in again.
    Activate { username: String },
    /// Write a consistent, checked copy of the database to a new file (safe while serving).
    Backup { destination: PathBuf },
    /// Replace the database with a backup (the server must be stopped); the replaced
    /// database is kept beside it.
    Restore { backup: PathBuf },
    /// Copy users, admins, conversations and messages from the original Django app's
    /// db.sqlite3 into an empty database, in one transaction; old passwords keep working.
    ImportDjango {
        /// The Django app's SQLite database (only read).
        source: PathBuf,
    },
    /// List every account, active or not.
    ListUsers {
        /// Only accounts whose username or email contains this.
        #[arg(long)]
        search: Option<String>,
    },
    /// Create an account (the way in on a server with `--signup closed`); the password is
    /// prompted twice, or read as one line from stdin.
    CreateUser {
        username: String,
        /// Email address (default: <username>@whitebeat.com).
        #[arg(long)]
        email: Option<String>,
        /// Put the account in the Admin group.
        #[arg(long)]
        admin: bool,
    },
    /// Manage invite codes for `--signup invite`.
    #[command(subcommand)]
    Invite(InviteCommand),
}

#[derive(Subcommand)]
pub enum InviteCommand {
    /// Create an invite code and print it.
    Create {
        /// Sign-ups it allows (0: any number).
        #[arg(long, default_value_t = 1)]
        uses: i64,
        /// Days until it expires (0: never; fractions allowed).
        #[arg(long, default_value_t = 7.0)]
        days: f64,
        /// A note for yourself: who it is for.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List every invite code and its state.
    List,
    /// Revoke an invite code (by code or id); accounts made with it stay.
    Revoke { code: String },
}

#[derive(Args)]
pub struct SuperuserArgs {
    /// Do not prompt: take --username, --email and the password from
    /// WHITEBEAT_SUPERUSER_PASSWORD.
    #[arg(long)]
    pub noinput: bool,
    #[arg(long)]
    pub username: Option<String>,
    #[arg(long)]
    pub email: Option<String>,
}

/// Turns the list of `settings!` into clap arguments, one struct per group (`GlobalArgs`,
/// whose flags every command takes, and `ServeArgs`), each convertible into the group's
/// typed settings. The flag is the field's name; the help is its doc comment.
macro_rules! clap_args {
    (global { $($global:tt)* } serve { $($serve:tt)* }) => {
        clap_args! { @group GlobalArgs => GlobalSettings, true, $($global)* }
        clap_args! { @group ServeArgs => ServeSettings, false, $($serve)* }
    };
    (
        @group $args:ident => $settings:ident, $global:tt,
        $(
            $(#[doc = $doc:tt])*
            $name:ident: $ty:ident $(<$arg:ident>)?, env $env:tt
            $(, default $default:tt)? $(, unset $unset:tt)?
            $(, value_name $value_name:tt)? $(, delimiter $delimiter:tt)?;
        )*
    ) => {
        #[derive(Args)]
        pub struct $args {
            $(
                $(#[doc = $doc])*
                #[arg(
                    long,
                    env = $env,
                    global = $global,
                    $(default_value = $default,)?
                    $(value_name = $value_name,)?
                    $(value_delimiter = $delimiter,)?
                )]
                pub $name: $ty $(<$arg>)?,
            )*
        }

        impl From<$args> for $settings {
            fn from(a: $args) -> $settings {
                $settings { $($name: a.$name,)* }
            }
        }
    };
}

settings!(clap_args);

/// `--log-level`'s values, listed in `--help`.
impl clap::ValueEnum for LogLevel {
    fn value_variants<'a>() -> &'a [Self] {
        &LogLevel::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::all_settings;
    use clap::CommandFactory;

    /// Every flag of the settings comes from the list, with its environment variable and
    /// default, and there are no others.
    #[test]
    fn the_settings_flags_are_the_declared_settings() {
        let top = Cli::command();
        let serve = top.find_subcommand("serve").unwrap().clone();
        for s in all_settings() {
            let command = if s.global { &top } else { &serve };
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == s.name)
                .unwrap_or_else(|| panic!("{} is not an argument", s.name));
            assert_eq!(
                arg.get_long().map(|l| format!("--{l}")),
                Some(s.flag()),
                "{}",
                s.name
            );
            assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(s.env)));
            assert_eq!(arg.is_global_set(), s.global, "{}", s.name);
            let defaults: Vec<_> = arg
                .get_default_values()
                .iter()
                .map(|d| d.to_str().unwrap())
                .collect();
            assert_eq!(defaults, Vec::from_iter(s.default), "{}", s.name);
        }
        let mut flags: Vec<_> = [&top, &serve]
            .into_iter()
            .flat_map(|c| c.get_arguments())
            .filter(|a| !a.is_positional())
            .map(|a| a.get_id().as_str())
            .filter(|id| !["help", "version"].contains(id))
            .collect();
        let mut declared: Vec<_> = all_settings().map(|s| s.name).collect();
        flags.sort_unstable();
        declared.sort_unstable();
        assert_eq!(flags, declared);
    }

    #[test]
    fn flags_and_environment_reach_the_settings() {
        let cli = Cli::try_parse_from([
            "whitebeat",
            "serve",
            "--db",
            "x.sqlite3",
            "--sends-per-minute",
            "0",
            "--cors-origins",
            "https://a.example,https://b.example",
            "--heartbeat-secs",
            "0.05",
        ])
        .unwrap();
        let global = GlobalSettings::from(cli.global);
        assert_eq!(global.db, PathBuf::from("x.sqlite3"));
        let Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        let serve = ServeSettings::from(*serve);
        assert_eq!(serve.sends_per_minute, 0);
        assert_eq!(
            serve.cors_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(serve.heartbeat_secs, 0.05);
        assert_eq!(serve.bind, ServeSettings::default().bind);
    }
}
