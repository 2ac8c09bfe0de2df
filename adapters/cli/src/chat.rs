//! `parley chat USER`: typed lines are sent; incoming lines appear as they arrive.

use anyhow::Result;
use parley_domain::{MessageText, Username};
use parley_peer::{Home, view};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{
    client::{self, Connection},
    control::{Request, Subscribed},
    present, terminal,
};

/// Runs the chat until `/quit` or the end of input.
pub async fn run(home: &Home, with: Username) -> Result<()> {
    let (mut events, _): (_, Subscribed) = Connection::open(home, &Request::Subscribe).await?;
    let history: view::History =
        client::call(home, &Request::History { with: with.clone() }).await?;
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
                    "/status" => match client::call::<view::Status>(home, &Request::Status).await {
                        Ok(status) => println!("{}", present::status_lines(&status)),
                        Err(e) => eprintln!("{}", terminal::inline(&e.to_string())),
                    },
                    text => {
                        let sent = match MessageText::parse(text) {
                            Ok(text) => {
                                let request = Request::Send { to: with.clone(), text, ttl: None, attachments: Vec::new() };
                                client::call::<view::Sent>(home, &request).await
                            }
                            Err(e) => Err(anyhow::anyhow!("cannot send: {e}")),
                        };
                        match sent {
                            Ok(sent) if sent.queued => println!("  (held for {with} by the rendezvous)"),
                            Ok(_) => println!("  (delivered)"),
                            Err(e) => eprintln!("  not delivered: {}", terminal::inline(&e.to_string())),
                        }
                    }
                }
            }
            event = events.next::<view::Event>() => {
                let Some(event) = event? else {
                    eprintln!("the daemon stopped");
                    return Ok(());
                };
                match event {
                    view::Event::KeysChanged { user } if user == with.as_str() => {
                        println!("!! {with}'s keys have changed; see `parley safety-number {with}`");
                    }
                    view::Event::Message { message } if message.from == with.as_str() => {
                        println!("{}", present::message_line(&message));
                    }
                    _ => {}
                }
            }
        }
    }
}
