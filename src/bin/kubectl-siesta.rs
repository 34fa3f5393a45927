//! `kubectl-siesta`: found by kubectl on PATH, run as `kubectl siesta ...`.

fn main() -> std::process::ExitCode {
    siesta::plugin::main()
}
