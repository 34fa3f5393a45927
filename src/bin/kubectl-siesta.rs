//! `kubectl-siesta`: found by kubectl on PATH, run as `kubectl siesta ...`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    siesta::plugin::main()
}
