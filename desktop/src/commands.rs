//! The Tauri commands: each parses what the window sent at this edge and calls the
//! [`Desktop`] state or the running peer, answering with a [`view`] document or a
//! [`Refusal`] (`{code, message}`).

use parley_domain::Password;
use parley_peer::{
    Outgoing,
    error::{message_id, text, ttl},
    view::{self, Refusal},
};
use percent_encoding::percent_decode_str;
use tauri::{State, ipc::Request};

use crate::{
    Desktop, Error,
    enrollment::{Form, invite, username},
};

/// Which screen the home calls for; opens what needs no secret.
#[tauri::command]
pub async fn boot(desktop: State<'_, Desktop>) -> Result<view::Boot, Refusal> {
    Ok(desktop.boot().await)
}

/// Opens a store locked with a passphrase.
#[tauri::command]
pub async fn unlock(
    desktop: State<'_, Desktop>,
    passphrase: String,
) -> Result<view::Boot, Refusal> {
    Ok(desktop.unlock(passphrase).await?)
}

/// Whether `name` can be a username: the rule the first-run form checks as it is typed.
#[tauri::command]
pub fn check_username(name: String) -> Result<(), Refusal> {
    username(name.trim()).map(drop).map_err(Refusal::from)
}

/// The server and CA fingerprint an invite (`parley://join?…`) names, for the first-run
/// screen to fill in; a malformed invite is refused with the sentence saying why.
#[tauri::command]
pub fn read_invite(text: String) -> Result<view::Invite, Refusal> {
    invite(&text).map_err(Refusal::from)
}

/// Enrolls this home and starts the node.
#[tauri::command]
pub async fn enroll(
    desktop: State<'_, Desktop>,
    server: String,
    fingerprint: String,
    username: String,
    password: String,
    passphrase: String,
    totp: Option<String>,
) -> Result<view::Boot, Refusal> {
    let form = Form {
        server,
        fingerprint,
        username,
        password: Password::new(password),
        passphrase,
        totp: totp.unwrap_or_default(),
    };
    Ok(desktop.enroll(form).await?)
}

/// Every conversation, most recent first.
#[tauri::command]
pub async fn conversations(
    desktop: State<'_, Desktop>,
) -> Result<Vec<view::Conversation>, Refusal> {
    Ok(desktop.peer().await?.conversations()?)
}

/// One conversation, oldest first.
#[tauri::command]
pub async fn history(desktop: State<'_, Desktop>, with: String) -> Result<view::History, Refusal> {
    let with = username(&with)?;
    Ok(desktop.peer().await?.history(&with)?)
}

/// Sends a message. Resolves once the receipt is back, or once the message is kept in the
/// outbox to go out later (`queued`); the window shows it as soon as it is stored.
#[tauri::command]
pub async fn send(
    desktop: State<'_, Desktop>,
    to: String,
    text: String,
    ttl: Option<String>,
    attachments: Option<Vec<String>>,
) -> Result<view::Outcome, Refusal> {
    let outgoing = outgoing(&to, text, ttl)?;
    Ok(desktop
        .send(outgoing, &attachments.unwrap_or_default())
        .await?)
}

/// Counts the conversation as read.
#[tauri::command]
pub async fn mark_read(desktop: State<'_, Desktop>, with: String) -> Result<view::Read, Refusal> {
    let with = username(&with)?;
    Ok(desktop.peer().await?.mark_read(&with)?)
}

/// A contact's safety number.
#[tauri::command]
pub async fn contact(desktop: State<'_, Desktop>, user: String) -> Result<view::Contact, Refusal> {
    let user = username(&user)?;
    Ok(desktop.peer().await?.contact(&user)?)
}

/// Accepts a contact's new keys.
#[tauri::command]
pub async fn trust(desktop: State<'_, Desktop>, user: String) -> Result<view::Trusted, Refusal> {
    let user = username(&user)?;
    Ok(desktop.peer().await?.trust(&user)?)
}

/// Turns the second factor on: its `otpauth://` URI and QR code, shown once.
#[tauri::command]
pub async fn totp_enable(desktop: State<'_, Desktop>) -> Result<view::TotpEnabled, Refusal> {
    Ok(desktop.peer().await?.totp_enable().await?)
}

/// Turns the second factor off, with a current code.
#[tauri::command]
pub async fn totp_disable(
    desktop: State<'_, Desktop>,
    code: String,
) -> Result<view::TotpDisabled, Refusal> {
    Ok(desktop.peer().await?.totp_disable(&code).await?)
}

/// The node's state for the status line.
#[tauri::command]
pub async fn status(desktop: State<'_, Desktop>) -> Result<view::Status, Refusal> {
    Ok(desktop.status().await?)
}

/// Keeps a picked file for the next message. The body is the file's bytes; the header
/// `x-file-name` its name (URI-encoded).
#[tauri::command]
pub async fn stage_attachment(
    desktop: State<'_, Desktop>,
    request: Request<'_>,
) -> Result<view::Staged, Refusal> {
    let tauri::ipc::InvokeBody::Raw(bytes) = request.body() else {
        return Err(Error::NoBytes.into());
    };
    let name = file_name(
        request
            .headers()
            .get("x-file-name")
            .and_then(|v| v.to_str().ok()),
    );
    Ok(desktop.staging().stage(&name, bytes)?)
}

/// Deletes the copy of a picked file the user removed from the composer.
#[tauri::command]
pub async fn discard_attachment(desktop: State<'_, Desktop>, token: String) -> Result<(), Refusal> {
    desktop.staging().unstage(&[token]);
    Ok(())
}

/// Decrypts an attachment into a new file in the downloads folder.
#[tauri::command]
pub async fn save_attachment(
    desktop: State<'_, Desktop>,
    with: String,
    id: String,
    index: usize,
) -> Result<view::Saved, Refusal> {
    let (with, id) = (username(&with)?, message_id(&id)?);
    Ok(desktop.save_attachment(&with, &id, index).await?)
}

/// What the composer sent, parsed: the recipient, the text and the time to live (empty: none).
fn outgoing(to: &str, raw_text: String, raw_ttl: Option<String>) -> Result<Outgoing, Error> {
    Ok(Outgoing {
        to: username(to)?,
        text: text(raw_text)?,
        ttl: raw_ttl
            .filter(|t| !t.is_empty())
            .map(|t| ttl(&t))
            .transpose()?,
        attachments: Vec::new(),
    })
}

/// The file name from its header, as `encodeURIComponent` wrote it (an invalid escape stays
/// as it is).
fn file_name(header: Option<&str>) -> String {
    header
        .map(|raw| percent_decode_str(raw).decode_utf8_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn file_names_arrive_as_typed() {
        assert_eq!(
            file_name(Some("r%C3%A9sum%C3%A9%20v2.pdf")),
            "résumé v2.pdf"
        );
        assert_eq!(file_name(Some("100%")), "100%");
        assert_eq!(file_name(Some("%zz.txt")), "%zz.txt");
    }
}
