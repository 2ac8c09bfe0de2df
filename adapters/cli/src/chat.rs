//! `parley chat USER`: typed lines are sent; incoming lines appear as they arrive.

use std::path::Path;

use anyhow::Result;
use parley_domain::Username;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{
    client::{self, Connection},
    control::Request,
    present,
};

/// Runs the chat until `/quit` or the end of input.
pub async fn run(home: &Path, with: Username) -> Result<()> {
    let (mut events, _) = Connection::open(home, &Request::Subscribe).await?;
    let history = client::call(
        home,
        &Request::History {
            with: with.to_string(),
        },
    )
    .await?;
    let earlier = present::history_lines(&history);
    if !earlier.is_empty() {
        println!("{earlier}");
    }
    println!("-- chatting with {with}; /status shows the connection, /quit leaves --");
    let mut input = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = input.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                let line = line.trim_end();
                match line {
                    "" => {}
                    "/quit" => return Ok(()),
                    "/status" => match client::call(home, &Request::Status).await {
                        Ok(status) => println!("{}", present::status_lines(&status)),
                        Err(e) => eprintln!("{e}"),
                    },
                    text => {
                        let request = Request::Send { to: with.to_string(), text: text.to_owned(), ttl: None, attachments: Vec::new() };
                        match client::call(home, &request).await {
                            Ok(_) => println!("  (delivered)"),
                            Err(e) => eprintln!("  not delivered: {e}"),
                        }
                    }
                }
            }
            event = events.next() => {
                let Some(event) = event? else {
                    eprintln!("the daemon stopped");
                    return Ok(());
                };
                if event.get("event").and_then(Value::as_str) == Some("keys_changed")
                    && event.get("user").and_then(Value::as_str) == Some(with.as_str())
                {
                    println!("!! {with}'s keys have changed; see `parley safety-number {with}`");
                }
                if event.get("event").and_then(Value::as_str) == Some("message")
                    && let Some(m) = event.get("message")
                    && m.get("from").and_then(Value::as_str) == Some(with.as_str())
                {
                    println!("{}", present::message_line(m));
                }
            }
        }
    }
}
