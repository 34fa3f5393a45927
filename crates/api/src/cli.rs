//! Command-line defaults, written once: in the clap attributes of each
//! `Config`. Code that needs a `Config` without a command line (tests,
//! embedding) asks clap for it instead of repeating every default.

use clap::{Args, Command, FromArgMatches};

/// The value clap gives `T` for an empty command line, with every `env`
/// fallback switched off: a default, not whatever the environment of the
/// calling process happens to say (a test run inside a pod that has
/// `SIESTA_DOMAIN` set must still get the default domain).
///
/// Panics when `T` has a required argument or a default its own parser
/// refuses: both are mistakes in `T`'s attributes, and every crate's tests
/// call this.
pub fn defaults<T: Args + FromArgMatches>() -> T {
    let command = T::augment_args(Command::new("defaults")).mut_args(|arg| arg.env(None));
    let matches = command
        .try_get_matches_from(["defaults"])
        .unwrap_or_else(|e| panic!("the command-line defaults do not parse: {e}"));
    T::from_arg_matches(&matches)
        .unwrap_or_else(|e| panic!("the command-line defaults do not parse: {e}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Args, Debug, PartialEq)]
    struct Example {
        /// Read from the environment on a real command line.
        #[arg(long, env = "PATH", default_value = "from-the-attribute")]
        name: String,
        #[arg(long, default_value = "2s", value_parser = crate::duration::parse)]
        interval: Duration,
        #[arg(long, value_delimiter = ',')]
        list: Vec<String>,
        #[arg(long)]
        maybe: Option<u16>,
    }

    #[test]
    fn defaults_come_from_the_attributes_and_not_the_environment() {
        // PATH is set in every test environment: were env fallbacks kept,
        // `name` would be the PATH.
        assert!(std::env::var_os("PATH").is_some());
        assert_eq!(
            defaults::<Example>(),
            Example {
                name: "from-the-attribute".into(),
                interval: Duration::from_secs(2),
                list: Vec::new(),
                maybe: None,
            }
        );
    }

    #[derive(Args, Debug)]
    struct Required {
        #[arg(long)]
        #[allow(dead_code)]
        needed: String,
    }

    #[test]
    #[should_panic(expected = "the command-line defaults do not parse")]
    fn a_required_argument_has_no_default() {
        defaults::<Required>();
    }
}
