//! `/parley/attachment/1`: encrypted attachments travel as one raw stream each, before the
//! envelope that names them.
//!
//! ```text
//! sender → recipient:  version u8 (= 1) ‖ sha256 [32] ‖ size u64 BE
//! recipient → sender:  4 (go ahead), or 1 (too large) ‖ cap u64 BE and the stream ends
//! sender → recipient:  size bytes
//! recipient → sender:  status u8: 0 stored, 2 digest mismatch, 3 not stored (disk)
//! ```
//!
//! The bytes are the attachment already encrypted under its own key (the key travels only
//! inside the sealed envelope), so the stream carries nothing readable. The recipient refuses
//! a declared size over its cap before reading a byte, writes into a staging file named by the
//! sender's certified name and the SHA-256, hashes as it writes, and keeps the file only when
//! the digest matches. The use case claims a staged file when the signed envelope naming that
//! digest arrives; nothing else ever reads it.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::{PeerId, StreamProtocol};
use parley_domain::{Digest, Role, Username};
use parley_usecases::ports::TransportError;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::registry::Registry;

/// The attachment protocol.
pub const ATTACHMENT_PROTOCOL: StreamProtocol = StreamProtocol::new("/parley/attachment/1");
/// At most this many attachment streams are received at once; more are dropped.
pub const MAX_CONCURRENT_UPLOADS: usize = 4;
/// A stream that sends nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(30);
/// Bytes per read and write.
const BUFFER: usize = 64 * 1024;

/// Numbers the staging files being written, so two uploads never share one.
static NEXT_PART: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

const VERSION: u8 = 1;
const STORED: u8 = 0;
const TOO_LARGE: u8 = 1;
const MISMATCH: u8 = 2;
const UNAVAILABLE: u8 = 3;
const GO_AHEAD: u8 = 4;

/// Names the staging file of an attachment a sender sent with a digest.
pub type StagingName = Arc<dyn Fn(&Username, &Digest) -> PathBuf + Send + Sync>;

/// Where received attachments wait for their envelope, and how large one may be.
#[derive(Clone)]
pub struct AttachmentConfig {
    /// Where the attachment (sender, SHA-256) is staged: the store that later claims it
    /// decides (inside its folder, so a claim is a rename).
    pub staging: StagingName,
    /// The largest encrypted attachment accepted, in bytes.
    pub max_bytes: u64,
}

impl std::fmt::Debug for AttachmentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentConfig")
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// Receives attachment streams until `incoming` ends.
pub(crate) async fn serve(
    registry: Registry,
    config: AttachmentConfig,
    mut incoming: libp2p_stream::IncomingStreams,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_UPLOADS));
    let config = Arc::new(config);
    while let Some((peer, stream)) = incoming.next().await {
        let from = match registry.certified(&peer).map(|c| c.role) {
            Some(Role::User(user)) => user,
            _ => {
                tracing::info!(%peer, "dropped an attachment stream from a peer that is not an enrolled user");
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::info!(%from, "dropped an attachment stream: too many at once");
            continue;
        };
        let config = config.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = receive(stream, &from, &config).await {
                tracing::info!(%from, error = %e, "attachment not received");
            }
        });
    }
}

async fn idle<T>(
    what: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(IDLE, what)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "the sender went quiet"))?
}

/// Receives one attachment stream from `from`: the recipient's side of the protocol above,
/// over any byte stream. `serve` runs it for every stream; it is public for the fuzz targets.
#[doc(hidden)]
#[tracing::instrument(name = "p2p.receive_attachment", skip_all, fields(%from, size, outcome))]
pub async fn receive(
    mut stream: impl futures::AsyncRead + futures::AsyncWrite + Unpin,
    from: &Username,
    config: &AttachmentConfig,
) -> std::io::Result<()> {
    let mut head = [0u8; 41];
    idle(stream.read_exact(&mut head)).await?;
    let (version, rest) = head.split_at(1);
    let (digest, size) = rest.split_at(32);
    let size = u64::from_be_bytes(size.try_into().unwrap_or([0xff; 8]));
    tracing::Span::current().record("size", size);
    let digest = Digest(digest.try_into().unwrap_or([0; 32]));
    if version != [VERSION] {
        return Err(std::io::Error::other("unknown attachment stream version"));
    }
    if size > config.max_bytes {
        let mut answer = vec![TOO_LARGE];
        answer.extend_from_slice(&config.max_bytes.to_be_bytes());
        idle(stream.write_all(&answer)).await?;
        let _ = stream.close().await;
        tracing::Span::current().record("outcome", "too_large");
        return Ok(());
    }
    idle(stream.write_all(&[GO_AHEAD])).await?;
    idle(stream.flush()).await?;
    let target = (config.staging)(from, &digest);
    let partial = target.with_extension(format!(
        "part-{}",
        NEXT_PART.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let outcome = async {
        if let Some(folder) = target.parent() {
            tokio::fs::create_dir_all(folder).await?;
        }
        let mut file = tokio::fs::File::create(&partial).await?;
        let mut hash = Sha256::new();
        let mut left = size;
        let mut buffer = vec![0u8; BUFFER];
        while left > 0 {
            let want = usize::try_from(left.min(BUFFER as u64)).unwrap_or(BUFFER);
            let got = idle(stream.read(&mut buffer[..want])).await?;
            if got == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stream ended before the declared size",
                ));
            }
            hash.update(&buffer[..got]);
            file.write_all(&buffer[..got]).await?;
            left -= got as u64;
        }
        file.sync_all().await?;
        Ok(Digest(hash.finalize().into()))
    }
    .await;
    let status = match outcome {
        Ok(got) if got == digest => match tokio::fs::rename(&partial, &target).await {
            Ok(()) => STORED,
            Err(_) => UNAVAILABLE,
        },
        Ok(_) => MISMATCH,
        Err(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            let _ = tokio::fs::remove_file(&partial).await;
            return outcome.map(drop);
        }
        Err(_) => UNAVAILABLE,
    };
    if status != STORED {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    tracing::Span::current().record(
        "outcome",
        match status {
            STORED => "stored",
            MISMATCH => "digest_mismatch",
            _ => "unavailable",
        },
    );
    idle(stream.write_all(&[status])).await?;
    let _ = stream.close().await;
    Ok(())
}

/// Sends the encrypted file at `path` (of `size` bytes, SHA-256 `sha256`) to `peer`, which
/// must be connected and verified already.
#[tracing::instrument(name = "p2p.send_attachment", skip_all, fields(%peer, size), err(Display, level = "info"))]
pub(crate) async fn upload(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    path: &Path,
    sha256: &Digest,
    size: u64,
) -> Result<(), TransportError> {
    let unreachable =
        |what: &str, e: &dyn std::fmt::Display| TransportError::Unreachable(format!("{what}: {e}"));
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| TransportError::Refused(format!("the attachment cannot be read: {e}")))?;
    let mut stream = control
        .open_stream(peer, ATTACHMENT_PROTOCOL)
        .await
        .map_err(|e| unreachable("no attachment stream", &e))?;
    let mut head = Vec::with_capacity(41);
    head.push(VERSION);
    head.extend_from_slice(&sha256.0);
    head.extend_from_slice(&size.to_be_bytes());
    stream
        .write_all(&head)
        .await
        .map_err(|e| unreachable("the attachment stream broke", &e))?;
    stream
        .flush()
        .await
        .map_err(|e| unreachable("the attachment stream broke", &e))?;
    let mut answer = [UNAVAILABLE];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(|e| TransportError::NoReceipt(format!("the recipient did not answer: {e}")))?;
    match answer[0] {
        GO_AHEAD => {}
        TOO_LARGE => {
            let mut cap = [0u8; 8];
            let _ = stream.read_exact(&mut cap).await;
            return Err(TransportError::Rejected(format!(
                "it accepts attachments of at most {} bytes, this one has {size}",
                u64::from_be_bytes(cap)
            )));
        }
        _ => {
            return Err(TransportError::NoReceipt(
                "the recipient does not take the attachment now".into(),
            ));
        }
    }
    let mut buffer = vec![0u8; BUFFER];
    let mut sent = 0u64;
    while sent < size {
        let got = file
            .read(&mut buffer)
            .await
            .map_err(|e| TransportError::Refused(format!("the attachment cannot be read: {e}")))?;
        if got == 0 {
            return Err(TransportError::Refused(
                "the attachment file is shorter than recorded".into(),
            ));
        }
        stream
            .write_all(&buffer[..got])
            .await
            .map_err(|e| unreachable("the attachment stream broke", &e))?;
        sent += got as u64;
    }
    let _ = stream.flush().await;
    let mut status = [UNAVAILABLE];
    let answered = stream.read_exact(&mut status).await.is_ok();
    match (answered, status[0]) {
        (true, STORED) => Ok(()),
        (true, MISMATCH) => Err(TransportError::Refused(
            "the recipient received other bytes than were sent".into(),
        )),
        _ => Err(TransportError::NoReceipt(
            "the recipient did not store the attachment".into(),
        )),
    }
}
