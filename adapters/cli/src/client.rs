//! The subcommands' side of the control socket.

use std::{path::Path, time::Duration};

use anyhow::{Result, anyhow};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    net::{
        UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
};

use crate::control::{self, Request, Response};

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
    /// Sends `request` and returns the first answer.
    pub async fn open(home: &Path, request: &Request) -> Result<(Self, Value)> {
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

    /// The next answer, `None` when the daemon closed the connection.
    pub async fn next(&mut self) -> Result<Option<Value>> {
        let Some(line) = self.lines.next_line().await? else {
            return Ok(None);
        };
        match serde_json::from_str::<Response>(&line)
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
async fn connect(home: &Path) -> Result<UnixStream> {
    if !home.join("store").exists() {
        return Err(anyhow!(
            "{} is not an enrolled Parley home; run `parley --home {} enroll` first",
            home.display(),
            home.display()
        ));
    }
    let path = home.join(control::SOCKET);
    let deadline = tokio::time::Instant::now() + STARTING_DAEMON_GRACE;
    loop {
        match UnixStream::connect(&path).await {
            Ok(stream) => return Ok(stream),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => {
                return Err(anyhow!(
                    "no Parley daemon is running for {}; start it with `parley --home {} daemon`",
                    home.display(),
                    home.display()
                ));
            }
        }
    }
}

/// One request, one answer.
pub async fn call(home: &Path, request: &Request) -> Result<Value> {
    Ok(Connection::open(home, request).await?.1)
}
