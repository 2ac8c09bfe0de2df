//! `parley-desktop`: the Tauri app is not built yet. This placeholder keeps the workspace's
//! shape and tells a user where to go meanwhile.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    eprintln!(
        "the Parley desktop app is not available in this version; use the `parley` command \
         (`parley chat USER`) or ./run.sh"
    );
    std::process::ExitCode::FAILURE
}
