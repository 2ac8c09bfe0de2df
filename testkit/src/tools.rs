//! What a test needs from the machine (root, programs on `PATH`), and the loud skip when it
//! is missing: a line on stderr outside the harness's capture, or a failure under `CI`, whose
//! machine runs the suite as root with every tool installed by test.sh.

use std::{io::Write, path::PathBuf, process::Command};

/// Whether the tests run as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Where the program `name` is on `PATH`, if it is.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The first of `names` not found on `PATH`.
pub fn first_missing<'a>(names: &[&'a str]) -> Option<&'a str> {
    names.iter().copied().find(|name| on_path(name).is_none())
}

/// Says `SKIPPED: <sentence>` on the process's stderr (past the harness's capture, so that it
/// shows), for a test that returns at once after it.
///
/// # Panics
/// Under `CI`, with the sentence: there a missing tool is a broken machine.
pub fn skip(sentence: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{sentence} (CI is set, so this fails)"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED: {sentence}");
}

/// `true` when nothing is `missing`; otherwise [`skip`]s, saying what the test needs.
pub fn runnable(missing: Option<&str>) -> bool {
    let Some(missing) = missing else {
        return true;
    };
    skip(&format!(
        "this test needs {missing}; run the tests as root with it"
    ));
    false
}

/// Whether the program `tool` (Debian package `package`) is on `PATH`; [`skip`]s when not.
pub fn tool_available(tool: &str, package: &str) -> bool {
    let found = on_path(tool).is_some();
    if !found {
        skip(&format!("{tool} not installed; apt-get install {package}"));
    }
    found
}

/// Whether root and every one of `tools` (program, Debian package) are there; [`skip`]s,
/// naming the first thing missing, when not.
pub fn root_with(why: &str, tools: &[(&str, &str)]) -> bool {
    if !is_root() {
        return runnable(Some(&format!("root ({why})")));
    }
    let missing = tools
        .iter()
        .find(|(tool, _)| on_path(tool).is_none())
        .map(|(tool, package)| format!("`{tool}` (apt-get install {package})"));
    runnable(missing.as_deref())
}

/// `oathtool`'s RFC 6238 code (6 digits, 30 s steps) for the base32 `secret`, `ahead` time steps
/// from now: an implementation of the second factor independent of Parley's.
///
/// # Panics
/// When oathtool cannot be run or refuses (check [`on_path`] first).
pub fn oathtool(secret: &str, ahead: u32) -> String {
    let at = format!("now + {} seconds", u64::from(ahead) * 30);
    let out = Command::new("oathtool")
        .args(["--totp", "-b", "-N", &at, secret])
        .output()
        .expect("run oathtool");
    assert!(out.status.success(), "oathtool: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
