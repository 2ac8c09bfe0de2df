//! The subcommands' side of the control socket.

use std::time::Duration;

use anyhow::{Result, anyhow};
use parley_peer::Home;
use serde::de::DeserializeOwned;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    net::{
        UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
};

use crate::control::{Request, Response};

/// A failure the daemon reported: its sentence and code.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct DaemonError {
    /// One sentence.
    pub error: String,
    /// The snake_case code.
    pub code: String,
}

/// An open connection to the daemon.
pub struct Connection {
    lines: Lines<BufReader<OwnedReadHalf>>,
    _write: OwnedWriteHalf,
}

impl Connection {
    /// Sends `request` and returns the first answer, read as a `T`.
    pub async fn open<T: DeserializeOwned>(home: &Home, request: &Request) -> Result<(Self, T)> {
        let stream = connect(home).await?;
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        write
            .write_all(&line)
            .await
            .map_err(|e| anyhow!("the daemon closed the control socket: {e}"))?;
        let mut connection = Self {
            lines: BufReader::new(read).lines(),
            _write: write,
        };
        let first = connection
            .next()
            .await?
            .ok_or_else(|| anyhow!("the daemon closed the connection without answering"))?;
        Ok((connection, first))
    }

    /// The next answer, read as a `T`; `None` when the daemon closed the connection.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        let Some(line) = self.lines.next_line().await? else {
            return Ok(None);
        };
        match serde_json::from_str::<Response<T>>(&line)
            .map_err(|_| anyhow!("the daemon sent an answer this parley does not understand"))?
        {
            Response::Ok { data } => Ok(Some(data)),
            Response::Error { error, code } => Err(DaemonError { error, code }.into()),
        }
    }
}

/// How long a command waits for a daemon that is still starting.
const STARTING_DAEMON_GRACE: Duration = Duration::from_secs(2);

/// Connects to the daemon of `home`, giving one that is just starting a moment to open its
/// socket; says plainly whether the home is not enrolled or no daemon runs.
async fn connect(home: &Home) -> Result<UnixStream> {
    let shown = home.path().display();
    if !home.store().exists() {
        return Err(anyhow!(
            "{shown} is not an enrolled Parley home; run `parley --home {shown} enroll` first"
        ));
    }
    let path = home.control_socket();
    let deadline = tokio::time::Instant::now() + STARTING_DAEMON_GRACE;
    loop {
        match UnixStream::connect(&path).await {
            Ok(stream) => return Ok(stream),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => {
                return Err(anyhow!(
                    "no Parley daemon is running for {shown}; start it with `parley --home {shown} daemon`"
                ));
            }
        }
    }
}

/// One request, one answer, read as a `T`.
pub async fn call<T: DeserializeOwned>(home: &Home, request: &Request) -> Result<T> {
    Ok(Connection::open(home, request).await?.1)
}
