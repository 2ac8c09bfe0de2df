//! `parley enroll`.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use parley_domain::{CaFingerprint, Password, Username};
use parley_enroll::HttpsEnrollment;
use parley_peer::Home;
use parley_usecases::{
    commands::Enroll,
    ports::{EnrollRequest, IdentityStore},
};

use crate::Usage;

/// Enrolls this home as `user` at `server`.
pub async fn run(home: &Home, server: &str, user: Username, pin: Option<&str>) -> Result<()> {
    let ca_pin = pin
        .map(|p| CaFingerprint::parse(p).map_err(|e| Usage(format!("--ca-fingerprint: {e}"))))
        .transpose()?;
    let password = password()?;
    // Created private, or made private when it was there before (a `mkdir -p`, a volume).
    parley_process::private_tree(home.path())?;
    let store = crate::unlock::open_store(home)?;
    let request = EnrollRequest {
        server: server.to_owned(),
        user: user.clone(),
        password,
        ca_pin,
        keys: None,
    };
    let enrollment = HttpsEnrollment::new();
    Enroll::new(&enrollment, &store).run(&request).await?;
    let identity = store.identity()?.context("the identity was not kept")?;
    if ca_pin.is_none() {
        eprintln!(
            "warning: no --ca-fingerprint given; trusted the rendezvous CA {} on first use. \
             Compare it with the one the rendezvous printed.",
            identity.ca_fingerprint
        );
    }
    if let Some(warning) = crate::unlock::key_file_warning(home, &store) {
        eprintln!("warning: {warning}");
    }
    println!("enrolled: {}", identity.user);
    println!("ca-fingerprint: {}", identity.ca_fingerprint);
    for addr in &identity.rendezvous_addrs {
        println!("rendezvous: {}", crate::terminal::inline(addr));
    }
    Ok(())
}

fn password() -> Result<Password> {
    if let Ok(password) = std::env::var("PARLEY_PASSWORD") {
        return Ok(Password::new(password));
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            Usage("no password: set PARLEY_PASSWORD or run enroll in a terminal".into()).into(),
        );
    }
    let password = rpassword::prompt_password("password: ").context("cannot read the password")?;
    Ok(Password::new(password))
}
