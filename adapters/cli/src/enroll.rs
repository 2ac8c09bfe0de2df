//! `parley enroll`.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use parley_domain::{CaFingerprint, Invite, Password, Username};
use parley_enroll::HttpsEnrollment;
use parley_peer::Home;
use parley_usecases::{
    commands::{Enroll, EnrollCommandError},
    ports::{EnrollError, EnrollRequest, IdentityStore},
};

use crate::Usage;

/// Where to enroll: the rendezvous's address and the CA to pin (none: trust on first use).
pub struct Target {
    server: String,
    ca_pin: Option<CaFingerprint>,
}

impl Target {
    /// From `--server` and `--ca-fingerprint`, or from `--invite` (clap keeps them apart).
    ///
    /// # Errors
    /// [`Usage`]: a fingerprint or an invite that is not one, or neither a server nor an
    /// invite.
    pub fn from_args(
        server: Option<String>,
        pin: Option<&str>,
        invite: Option<&str>,
    ) -> Result<Self> {
        if let Some(raw) = invite {
            let invite = Invite::parse(raw).map_err(|e| Usage(format!("--invite: {e}")))?;
            return Ok(Self {
                server: invite.server().to_owned(),
                ca_pin: Some(invite.ca()),
            });
        }
        let ca_pin = pin
            .map(|p| CaFingerprint::parse(p).map_err(|e| Usage(format!("--ca-fingerprint: {e}"))))
            .transpose()?;
        let server = server.ok_or_else(|| Usage("give --server URL or --invite URI".into()))?;
        Ok(Self { server, ca_pin })
    }
}

/// Enrolls this home as `user` at the rendezvous of `target`.
pub async fn run(home: &Home, target: &Target, user: Username) -> Result<()> {
    let (server, ca_pin) = (target.server.as_str(), target.ca_pin);
    let password = password()?;
    let (home_existed, store_existed) = (home.path().exists(), home.has_store());
    // Created private, or made private when it was there before (a `mkdir -p`, a volume).
    parley_process::private_tree(home.path())?;
    let store = crate::unlock::open_store(home)?;
    let mut request = EnrollRequest {
        server: server.to_owned(),
        user: user.clone(),
        password,
        ca_pin,
        keys: None,
        totp: std::env::var("PARLEY_TOTP").ok(),
    };
    let enrollment = HttpsEnrollment::new();
    let mut outcome = Enroll::new(&enrollment, &store).run(&request).await;
    // A name with the second factor on, no code given, and someone at the terminal: ask once.
    if request.totp.is_none()
        && std::io::stdin().is_terminal()
        && matches!(&outcome, Err(EnrollCommandError::Enrollment(EnrollError::Refused { code, .. })) if code == "totp_required")
    {
        let code = rpassword::prompt_password(format!(
            "{user} has a second factor on; the code from its authenticator app: "
        ))
        .context("cannot read the code")?;
        request.totp = Some(code);
        outcome = Enroll::new(&enrollment, &store).run(&request).await;
    }
    // Without a terminal to ask at, say where the code goes.
    if request.totp.is_none()
        && matches!(&outcome, Err(EnrollCommandError::Enrollment(EnrollError::Refused { code, .. })) if code == "totp_required")
    {
        outcome = Err(EnrollCommandError::Enrollment(EnrollError::Refused {
            code: "totp_required".into(),
            message: format!(
                "{user} has a second factor on: set PARLEY_TOTP to the current code from its authenticator app, or run enroll in a terminal"
            ),
        }));
    }
    if let Err(e) = outcome {
        // A store made for this attempt holds nothing: leave no half-made home behind, so
        // that the next attempt starts afresh (and may choose the passphrase again).
        drop(store);
        if !home_existed {
            let _ = std::fs::remove_dir_all(home.path());
        } else if !store_existed {
            let _ = std::fs::remove_dir_all(home.store());
        }
        return Err(e.into());
    }
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
    // Published now, so that a first message can reach this device before its daemon runs.
    let store = std::sync::Arc::new(store);
    if let Err(e) =
        parley_peer::publish_first_prekeys(store.clone(), std::time::Duration::from_secs(10)).await
    {
        eprintln!(
            "warning: this device's prekeys could not be published yet ({e}); the daemon \
             publishes them when it starts, and until then nobody can send it a first message"
        );
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
