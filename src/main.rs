//! The `orch` binary.

fn main() -> std::process::ExitCode {
    orch::cli::main()
}
