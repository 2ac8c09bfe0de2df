//! The Tauri commands: each turns what the window sent into a call on the [`Desktop`] state or
//! the running peer, and answers with JSON or a [`Failure`] (`{code, message}`).

use parley_domain::Password;
use parley_peer::{Failure, Outgoing};
use serde_json::{Value, json};
use tauri::{State, ipc::Request};

use crate::{
    Desktop,
    session::{Boot, Enrollment},
};

/// Which screen the home calls for; opens what needs no secret.
#[tauri::command]
pub async fn boot(desktop: State<'_, Desktop>) -> Result<Boot, Failure> {
    Ok(desktop.boot().await)
}

/// Opens a store locked with a passphrase.
#[tauri::command]
pub async fn unlock(desktop: State<'_, Desktop>, passphrase: String) -> Result<Boot, Failure> {
    desktop.unlock(passphrase).await
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
) -> Result<Boot, Failure> {
    desktop
        .enroll(Enrollment {
            server,
            fingerprint,
            username,
            password: Password::new(password),
            passphrase,
        })
        .await
}

/// Every conversation, most recent first.
#[tauri::command]
pub async fn conversations(desktop: State<'_, Desktop>) -> Result<Value, Failure> {
    let peer = desktop.peer().await?;
    tokio::task::block_in_place(|| peer.conversations())
}

/// One conversation, oldest first.
#[tauri::command]
pub async fn history(desktop: State<'_, Desktop>, with: String) -> Result<Value, Failure> {
    let peer = desktop.peer().await?;
    tokio::task::block_in_place(|| peer.history(&with))
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
) -> Result<Value, Failure> {
    let peer = desktop.peer().await?;
    let tokens = attachments.unwrap_or_default();
    let files = desktop.staged(&tokens)?;
    let ttl = ttl.filter(|t| !t.is_empty());
    match peer
        .send(Outgoing {
            to,
            text,
            ttl,
            attachments: files,
        })
        .await
    {
        Ok(mut sent) => {
            desktop.unstage(&tokens);
            sent["queued"] = json!(false);
            Ok(sent)
        }
        Err(failure) if failure.queued => {
            desktop.unstage(&tokens);
            Ok(json!({ "delivered": false, "queued": true, "note": failure.message }))
        }
        Err(failure) => Err(failure),
    }
}

/// Counts the conversation as read.
#[tauri::command]
pub async fn mark_read(desktop: State<'_, Desktop>, with: String) -> Result<Value, Failure> {
    let peer = desktop.peer().await?;
    tokio::task::block_in_place(|| peer.mark_read(&with))
}

/// A contact's safety number.
#[tauri::command]
pub async fn contact(desktop: State<'_, Desktop>, user: String) -> Result<Value, Failure> {
    let peer = desktop.peer().await?;
    tokio::task::block_in_place(|| peer.contact(&user))
}

/// Accepts a contact's new keys.
#[tauri::command]
pub async fn trust(desktop: State<'_, Desktop>, user: String) -> Result<Value, Failure> {
    let peer = desktop.peer().await?;
    tokio::task::block_in_place(|| peer.trust(&user))
}

/// The node's state for the status line.
#[tauri::command]
pub async fn status(desktop: State<'_, Desktop>) -> Result<Value, Failure> {
    let peer = desktop.peer().await?;
    let mut status = tokio::task::block_in_place(|| peer.status())?;
    status["home"] = json!(desktop.home().display().to_string());
    Ok(status)
}

/// Keeps a picked file for the next message. The body is the file's bytes; the header
/// `x-file-name` its name (URI-encoded).
#[tauri::command]
pub async fn stage_attachment(
    desktop: State<'_, Desktop>,
    request: Request<'_>,
) -> Result<Value, Failure> {
    let tauri::ipc::InvokeBody::Raw(bytes) = request.body() else {
        return Err(Failure::new(
            "bad_request",
            "the file's bytes did not arrive; attach it again",
        ));
    };
    let name = request
        .headers()
        .get("x-file-name")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    tokio::task::block_in_place(|| desktop.stage(&name, bytes))
}

/// Deletes the copy of a picked file the user removed from the composer.
#[tauri::command]
pub async fn discard_attachment(desktop: State<'_, Desktop>, token: String) -> Result<(), Failure> {
    desktop.unstage(&[token]);
    Ok(())
}

/// Decrypts an attachment into a new file in the downloads folder.
#[tauri::command]
pub async fn save_attachment(
    desktop: State<'_, Desktop>,
    with: String,
    id: String,
    index: usize,
) -> Result<Value, Failure> {
    let peer = desktop.peer().await?;
    let history = tokio::task::block_in_place(|| peer.history(&with))?;
    let name = history["messages"]
        .as_array()
        .and_then(|messages| messages.iter().find(|m| m["id"] == json!(id)))
        .and_then(|m| m["attachments"].get(index))
        .and_then(|a| a["name"].as_str())
        .unwrap_or("attachment")
        .to_owned();
    let to = desktop.download_path(&name);
    tokio::task::block_in_place(|| peer.save_attachment(&with, &id, index, &to))
}

/// Decodes `%XX` escapes (what `encodeURIComponent` makes); invalid ones stay as they are.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push(((hex(h).unwrap_or(0) << 4) | hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn file_names_arrive_as_typed() {
        assert_eq!(percent_decode("r%C3%A9sum%C3%A9%20v2.pdf"), "résumé v2.pdf");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz.txt"), "%zz.txt");
    }
}
