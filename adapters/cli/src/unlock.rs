//! Opening the encrypted store: with a passphrase (from `PARLEY_PASSPHRASE`, else asked on the
//! terminal), or with the key file where no passphrase is given.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use parley_peer::Home;
use parley_store::{Error, KeySource, Passphrase, Store, Unlock};

/// Opens the store of `home`, creating it (with a passphrase when one is given) if needed.
///
/// # Errors
/// A wrong or missing passphrase, a store in use, or an unreadable store, each as one sentence.
pub fn open_store(home: &Home) -> Result<Store> {
    if let Ok(passphrase) = std::env::var("PARLEY_PASSPHRASE") {
        if passphrase.is_empty() {
            return Err(crate::Usage(
                "PARLEY_PASSPHRASE is set but empty; set a passphrase, or unset it to keep the \
                 store's key in a file"
                    .into(),
            )
            .into());
        }
        return Ok(home.open(Unlock::Passphrase(Passphrase::new(passphrase)))?);
    }
    let terminal = std::io::stdin().is_terminal();
    if terminal && !home.has_store() {
        let chosen = rpassword::prompt_password(
            "choose a passphrase for this device's message store (empty: keep its key in a file): ",
        )
        .context("cannot read the passphrase")?;
        if chosen.is_empty() {
            return Ok(home.open(Unlock::KeyFile)?);
        }
        let again = rpassword::prompt_password("the same passphrase again: ")
            .context("cannot read the passphrase")?;
        if again != chosen {
            return Err(
                crate::Usage("the two passphrases differ; nothing was created".into()).into(),
            );
        }
        return Ok(home.open(Unlock::Passphrase(Passphrase::new(chosen)))?);
    }
    match home.open(Unlock::KeyFile) {
        Err(Error::PassphraseRequired) if terminal => {
            let passphrase = rpassword::prompt_password("passphrase for the message store: ")
                .context("cannot read the passphrase")?;
            Ok(home.open(Unlock::Passphrase(Passphrase::new(passphrase)))?)
        }
        other => Ok(other?),
    }
}

/// The warning to give once at start when the store's key lies in a file next to it.
#[must_use]
pub fn key_file_warning(home: &Home, store: &Store) -> Option<String> {
    (store.key_source() == KeySource::KeyFile).then(|| {
        format!(
            "the message store's key is kept in a file next to it ({}); anyone who can read \
             this folder can read your messages. Set PARLEY_PASSPHRASE (or enroll in a \
             terminal) to protect it with a passphrase instead.",
            home.key_file().display()
        )
    })
}
