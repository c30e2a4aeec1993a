//! Whether orch colours what it writes (log lines, clap's help and errors):
//! `NO_COLOR` (no-color.org), `CLICOLOR_FORCE` and `CLICOLOR`
//! (bixense.com/clicolors), then whether the stream is a terminal. The one
//! place that decides.

use std::ffi::OsString;

/// What the environment asks for, before looking at the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorChoice {
    /// `NO_COLOR` is set and not empty, or `CLICOLOR=0`.
    Never,
    /// `CLICOLOR_FORCE` is set, not empty and not `0` (and `NO_COLOR` is not).
    Always,
    /// Nothing asked: colour on a terminal only.
    Auto,
}

impl ColorChoice {
    /// Decide from the variables' values (`None`: unset). `NO_COLOR` wins
    /// over `CLICOLOR_FORCE`, which wins over `CLICOLOR`.
    pub fn decide(
        no_color: Option<&OsString>,
        clicolor_force: Option<&OsString>,
        clicolor: Option<&OsString>,
    ) -> ColorChoice {
        if no_color.is_some_and(|v| !v.is_empty()) {
            ColorChoice::Never
        } else if clicolor_force.is_some_and(|v| !v.is_empty() && v != "0") {
            ColorChoice::Always
        } else if clicolor.is_some_and(|v| v == "0") {
            ColorChoice::Never
        } else {
            ColorChoice::Auto
        }
    }

    /// The choice this process's environment makes.
    pub fn from_env() -> ColorChoice {
        let var = std::env::var_os;
        ColorChoice::decide(
            var("NO_COLOR").as_ref(),
            var("CLICOLOR_FORCE").as_ref(),
            var("CLICOLOR").as_ref(),
        )
    }

    /// Colour a stream that is (or is not) a terminal?
    pub fn enabled(self, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Never => false,
            ColorChoice::Always => true,
            ColorChoice::Auto => is_terminal,
        }
    }
}

/// Colour what goes to stderr (the log)?
pub fn stderr_enabled() -> bool {
    ColorChoice::from_env().enabled(std::io::IsTerminal::is_terminal(&std::io::stderr()))
}

/// The same decision for clap's help (stdout) and errors (stderr): colour
/// only when both are terminals, as clap picks one setting for both.
pub fn for_clap() -> clap::ColorChoice {
    use std::io::IsTerminal;
    let terminal = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    if ColorChoice::from_env().enabled(terminal) {
        clap::ColorChoice::Always
    } else {
        clap::ColorChoice::Never
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_table() {
        // (NO_COLOR, CLICOLOR_FORCE, CLICOLOR, terminal) -> colour?
        type Var = Option<&'static str>;
        let table: &[(Var, Var, Var, bool, bool)] = &[
            (None, None, None, true, true),
            (None, None, None, false, false),
            // NO_COLOR: any non-empty value disables; empty is as if unset.
            (Some("1"), None, None, true, false),
            (Some("0"), None, None, true, false),
            (Some("false"), None, None, true, false),
            (Some(""), None, None, true, true),
            (Some(""), None, None, false, false),
            // CLICOLOR_FORCE: any value but empty and 0 forces colour.
            (None, Some("1"), None, false, true),
            (None, Some("yes"), None, false, true),
            (None, Some("0"), None, false, false),
            (None, Some("0"), None, true, true),
            (None, Some(""), None, false, false),
            // NO_COLOR wins over CLICOLOR_FORCE.
            (Some("1"), Some("1"), None, true, false),
            (Some(""), Some("1"), None, false, true),
            // CLICOLOR=0 disables on a terminal; CLICOLOR_FORCE wins over it.
            (None, None, Some("0"), true, false),
            (None, None, Some("1"), true, true),
            (None, None, Some("1"), false, false),
            (None, Some("1"), Some("0"), false, true),
        ];
        for &(no_color, force, clicolor, terminal, expected) in table {
            let os = |v: Option<&str>| v.map(OsString::from);
            let choice = ColorChoice::decide(
                os(no_color).as_ref(),
                os(force).as_ref(),
                os(clicolor).as_ref(),
            );
            assert_eq!(
                choice.enabled(terminal),
                expected,
                "NO_COLOR={no_color:?} CLICOLOR_FORCE={force:?} CLICOLOR={clicolor:?} terminal={terminal}"
            );
        }
    }
}
