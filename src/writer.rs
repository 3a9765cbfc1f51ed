//! Group commit for sends. With `synchronous=FULL` every commit waits for the disk; one
//! commit per message would cap throughput at the disk's flush rate. Instead one writer
//! thread owns a connection, takes every send that is waiting, inserts them in one
//! transaction (each under its own savepoint, so one bad message cannot sink the others),
//! commits once, and only then answers each sender. A `201` therefore still means "on disk".

use crate::config::Config;
use crate::db::{self, chat::MessageRow, chat::NewMessage, chat::SentMessage};
use crate::error::{Error, Result};
use crate::live::Hub;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use rusqlite::Connection;
use std::sync::Arc;
use std::thread::JoinHandle;

const MAX_BATCH: usize = 256;

struct Job {
    sender_id: i64,
    sender: String,
    receiver_id: i64,
    receiver: String,
    content: String,
    reply: Sender<Result<SentMessage>>,
}

pub struct MessageWriter {
    jobs: Sender<Job>,
}

impl MessageWriter {
    /// Starts the writer thread; it exits when the `MessageWriter` is dropped. Committed
    /// messages are published to `hub` in id order.
    pub fn start(
        config: &Config,
        hub: Arc<Hub>,
    ) -> std::result::Result<(MessageWriter, JoinHandle<()>), String> {
        let conn = db::open(&config.db_path, config.sync)?;
        let (jobs, rx) = unbounded();
        let handle = std::thread::Builder::new()
            .name("message-writer".into())
            .spawn(move || run(conn, rx, &hub))
            .map_err(|e| format!("cannot start the message writer: {e}"))?;
        Ok((MessageWriter { jobs }, handle))
    }

    /// Stores a message and returns once it is committed (`m.now` is replaced by the time
    /// of the insert).
    pub fn send(&self, m: &NewMessage, sender: &str, receiver: &str) -> Result<SentMessage> {
        let (reply, answer) = bounded(1);
        let job = Job {
            sender_id: m.sender_id,
            sender: sender.to_string(),
            receiver_id: m.receiver_id,
            receiver: receiver.to_string(),
            content: m.content.to_string(),
            reply,
        };
        self.jobs
            .send(job)
            .map_err(|_| Error::Unavailable("The server is shutting down".into()))?;
        answer
            .recv()
            .map_err(|_| Error::internal("message writer stopped before answering"))?
    }
}

fn run(conn: Connection, rx: Receiver<Job>, hub: &Hub) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter().take(MAX_BATCH - 1));
        commit_batch(&conn, batch, hub);
    }
}

fn commit_batch(conn: &Connection, batch: Vec<Job>, hub: &Hub) {
    let tx = match db::write_tx(conn) {
        Ok(tx) => tx,
        Err(e) => {
            let err = Error::from(e);
            for job in batch {
                let _ = job.reply.send(Err(err.clone()));
            }
            return;
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    for job in &batch {
        let m = NewMessage {
            sender_id: job.sender_id,
            receiver_id: job.receiver_id,
            content: &job.content,
            // Stamped here, in commit order, so ids and times never disagree.
            now: db::now_us(),
        };
        results.push(insert_isolated(&tx, &m));
    }
    if let Err(e) = tx.commit() {
        // Nothing of the batch is on disk: every sender hears so.
        let err = Error::from(e);
        for job in batch {
            let _ = job.reply.send(Err(err.clone()));
        }
        return;
    }
    for (job, result) in batch.into_iter().zip(results) {
        if let Ok(sent) = &result {
            hub.publish_message(&MessageRow {
                id: sent.id,
                conversation_id: sent.conversation_id,
                sender_id: job.sender_id,
                sender: job.sender,
                receiver_id: job.receiver_id,
                receiver: job.receiver,
                content: job.content,
                is_read: sent.is_read,
                created_at: sent.created_at,
            });
        }
        let _ = job.reply.send(result);
    }
}

/// One insert under a savepoint: on failure only this message is rolled back.
fn insert_isolated(conn: &Connection, m: &NewMessage) -> Result<SentMessage> {
    conn.execute_batch("SAVEPOINT send")?;
    match db::chat::insert_message(conn, m) {
        Ok(sent) => {
            conn.execute_batch("RELEASE send")?;
            Ok(sent)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO send; RELEASE send");
            Err(e.into())
        }
    }
}
