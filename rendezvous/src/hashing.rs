//! Argon2id for enrollment, on a bounded set of threads behind a bounded, fair queue.
//!
//! Two kinds of work wait: checking the password of a known name, and hashing the password
//! of a new one. The threads take them in turn, one of each while both wait, so a flood of
//! guesses against known names cannot starve the enrollment of a new name, nor the reverse.
//! Each kind holds at most [`WAITING_PER_CLASS`] jobs; one more is refused at once as
//! [`Error::Busy`] (the API answers 503 `busy` with a `Retry-After`) instead of waiting
//! without bound. Guesses against one name are further bounded by the per-name lockout
//! (`lockout.rs`), and each address by the enrollment rate limit, both before any hashing.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

use argon2::Argon2;
use argon2::password_hash::{PasswordVerifier, phc::PasswordHash};
use parley_domain::Password;

use crate::service::Error;

/// Argon2id runs on this many long-lived threads, no more: each hash needs 19 MiB, and the
/// allocator keeps a thread's memory for that thread, so a bounded set of threads bounds the
/// rendezvous's memory (and a CPU-bound job gains nothing from more threads than cores).
const HASHING_THREADS: usize = 2;
/// Jobs of one kind waiting for a thread, at most (about 0.3 s of work each on 2 cores).
pub const WAITING_PER_CLASS: usize = 32;

type Job = Box<dyn FnOnce() + Send>;

/// What a hashing job is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Checking the password of a known name.
    Verify,
    /// Hashing the password of a new name.
    Create,
}

#[derive(Default)]
struct Waiting {
    verify: VecDeque<Job>,
    create: VecDeque<Job>,
    /// Which kind goes first when both wait: they alternate.
    create_next: bool,
}

impl Waiting {
    fn queue(&mut self, class: Class) -> &mut VecDeque<Job> {
        match class {
            Class::Verify => &mut self.verify,
            Class::Create => &mut self.create,
        }
    }

    /// The next job: the kind whose turn it is if any of it waits, else the other.
    fn next(&mut self) -> Option<Job> {
        let first = if self.create_next {
            Class::Create
        } else {
            Class::Verify
        };
        let second = if first == Class::Create {
            Class::Verify
        } else {
            Class::Create
        };
        let (class, job) = match self.queue(first).pop_front() {
            Some(job) => (first, job),
            None => (second, self.queue(second).pop_front()?),
        };
        self.create_next = class == Class::Verify;
        Some(job)
    }
}

struct Queue {
    waiting: Mutex<Waiting>,
    ready: Condvar,
}

/// The hashing threads' queue, started at first use.
fn queue() -> &'static Queue {
    static QUEUE: OnceLock<&'static Queue> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let queue: &'static Queue = Box::leak(Box::new(Queue {
            waiting: Mutex::new(Waiting::default()),
            ready: Condvar::new(),
        }));
        for n in 0..HASHING_THREADS {
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let mut waiting =
                                queue.waiting.lock().unwrap_or_else(PoisonError::into_inner);
                            loop {
                                if let Some(job) = waiting.next() {
                                    break job;
                                }
                                waiting = queue
                                    .ready
                                    .wait(waiting)
                                    .unwrap_or_else(PoisonError::into_inner);
                            }
                        };
                        job();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a hashing thread");
            }
        }
        queue
    })
}

/// Runs `work` on a hashing thread, or refuses at once when `class` has a full queue.
async fn on_hashing_thread<T: Send + 'static>(
    class: Class,
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    {
        let queue = queue();
        let mut waiting = queue.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let jobs = waiting.queue(class);
        if jobs.len() >= WAITING_PER_CLASS {
            return Err(Error::Busy);
        }
        jobs.push_back(Box::new(move || {
            let _ = tx.send(work());
        }));
        queue.ready.notify_one();
    }
    rx.await
        .map_err(|_| Error::Internal("a hashing job was lost".into()))?
}

thread_local! {
    /// Each hashing thread's Argon2 memory, allocated once and reused: freed and allocated
    /// again for every hash, 19 MiB blocks stay with the allocator (its threshold for giving
    /// large blocks back to the system rises after the first), and the rendezvous grows by
    /// that much per thread that ever hashed.
    static MEMORY: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Argon2id with the crate's default parameters over the calling thread's reused memory.
fn argon2_raw(password: &[u8], salt: &[u8]) -> Result<[u8; 32], Error> {
    let params = argon2::Params::DEFAULT;
    let mut out = [0u8; 32];
    MEMORY
        .with_borrow_mut(|memory| {
            memory.resize(params.block_count(), argon2::Block::default());
            Argon2::default().hash_password_into_with_memory(
                password,
                salt,
                &mut out,
                &mut memory[..],
            )
        })
        .map_err(|e| Error::Internal(format!("hashing failed: {e}")))?;
    Ok(out)
}

/// The start of the PHC string of an Argon2id hash with the default parameters.
fn phc_prefix() -> String {
    let p = argon2::Params::DEFAULT;
    format!(
        "$argon2id$v=19$m={},t={},p={}$",
        p.m_cost(),
        p.t_cost(),
        p.p_cost()
    )
}

/// The PHC string of an Argon2id hash with the default parameters.
fn phc(salt: &[u8], hash: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    format!("{}{}${}", phc_prefix(), b64.encode(salt), b64.encode(hash))
}

/// Argon2id with the crate's default parameters and a fresh 16-byte salt, on a hashing thread.
pub async fn hash(password: Password) -> Result<String, Error> {
    on_hashing_thread(Class::Create, move || {
        let mut salt = [0u8; 16];
        crate::ca::fill_random(&mut salt);
        let hash = argon2_raw(password.expose().as_bytes(), &salt)?;
        Ok(phc(&salt, &hash))
    })
    .await
}

/// Checks `password` against a stored PHC string: with the reused memory when the string has
/// the default parameters (every hash this rendezvous makes), else with the crate's own check.
pub async fn verify(password: Password, stored: String) -> Result<bool, Error> {
    on_hashing_thread(Class::Verify, move || {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        let ours = stored
            .strip_prefix(&phc_prefix())
            .and_then(|rest| rest.split_once('$'))
            .and_then(|(salt, hash)| Some((b64.decode(salt).ok()?, b64.decode(hash).ok()?)))
            .filter(|(_, hash)| hash.len() == 32);
        if let Some((salt, expected)) = ours {
            let got = argon2_raw(password.expose().as_bytes(), &salt)?;
            // Constant time: every byte is compared whatever the first difference.
            let diff = got
                .iter()
                .zip(&expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            return Ok(diff == 0);
        }
        let parsed = PasswordHash::new(&stored)
            .map_err(|e| Error::Internal(format!("stored hash unreadable: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHasher;

    #[tokio::test]
    async fn hashes_are_standard_phc_strings_both_ways() {
        let ours = hash(Password::new("pw".into())).await.expect("hash");
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
        let theirs = PasswordHasher::<PasswordHash>::hash_password(&Argon2::default(), b"pw")
            .expect("hash")
            .to_string();
        for stored in [ours, theirs] {
            assert!(
                verify(Password::new("pw".into()), stored.clone())
                    .await
                    .expect("verify")
            );
            assert!(
                !verify(Password::new("pv".into()), stored)
                    .await
                    .expect("verify")
            );
        }
    }

    #[test]
    fn both_kinds_take_turns_and_neither_starves() {
        let mut waiting = Waiting::default();
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        for (class, label) in [
            (Class::Verify, "v1"),
            (Class::Verify, "v2"),
            (Class::Verify, "v3"),
            (Class::Create, "c1"),
            (Class::Create, "c2"),
        ] {
            let order = order.clone();
            waiting
                .queue(class)
                .push_back(Box::new(move || order.lock().expect("lock").push(label)));
        }
        while let Some(job) = waiting.next() {
            job();
        }
        assert_eq!(
            *order.lock().expect("lock"),
            ["v1", "c1", "v2", "c2", "v3"],
            "one of each in turn while both wait"
        );
    }
}
