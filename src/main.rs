//! The `chiso` binary: see `chiso --help`.

fn main() -> std::process::ExitCode {
    chiso::run()
}
