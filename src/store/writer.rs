//! Group commit for sends. With `synchronous=FULL` every commit waits for the disk; one
//! commit per message would cap throughput at the disk's flush rate, and a worker blocked
//! on each commit would cap the batch at the number of workers. So a send's handler only
//! validates; it hands the message and its connection to the one writer thread and its
//! worker moves on. The writer takes every send that is waiting, inserts them in one
//! transaction (each under its own savepoint, so one bad message cannot sink the others)
//! and commits once; a responder thread then hands each committed message to `on_stored`
//! (which the server points at the live hub and the metrics), in id order, and hands its
//! `201` to the connection. A `201` therefore still means "on disk".

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{self, chat::MessageRow, chat::NewMessage, chat::SentMessage};
use crossbeam_channel::{unbounded, Receiver, Sender};
use rusqlite::Connection;
use std::thread::JoinHandle;

const MAX_BATCH: usize = 512;

/// Told of every committed message, in commit order, before its sender hears (the server
/// publishes it to the live hub and counts it).
pub type OnStored = Box<dyn Fn(&MessageRow) + Send>;

/// Called once the send is committed (with the stored message) or has failed.
pub type OnSent = Box<dyn FnOnce(Result<MessageRow>) + Send>;

/// A validated message waiting to be stored.
pub struct SendJob {
    pub sender_id: i64,
    pub sender: String,
    pub receiver_id: i64,
    pub receiver: String,
    pub content: String,
    pub on_done: OnSent,
}

#[derive(Clone)]
pub struct MessageWriter {
    jobs: Sender<SendJob>,
}

type Outcome = (SendJob, Result<SentMessage>);

impl MessageWriter {
    /// Starts the writer and responder threads; they exit, after finishing what is queued,
    /// when every `MessageWriter` clone is dropped.
    pub fn start(
        config: &Config,
        on_stored: OnStored,
    ) -> std::result::Result<(MessageWriter, Vec<JoinHandle<()>>), String> {
        let conn = store::open(&config.db_path, config.sync)?;
        store::set_cache_kib(&conn, 16 * 1024).map_err(|e| format!("cannot set the cache: {e}"))?;
        let (jobs, rx) = unbounded();
        let (done_tx, done_rx) = unbounded::<Vec<Outcome>>();
        let writer = std::thread::Builder::new()
            .name("message-writer".into())
            .spawn(move || run(conn, rx, done_tx))
            .map_err(|e| format!("cannot start the message writer: {e}"))?;
        let responder = std::thread::Builder::new()
            .name("message-responder".into())
            .spawn(move || respond_all(done_rx, &on_stored))
            .map_err(|e| format!("cannot start the message responder: {e}"))?;
        Ok((MessageWriter { jobs }, vec![writer, responder]))
    }

    /// Queues a message; `job.on_done` runs after the commit (or the failure).
    pub fn submit(&self, job: SendJob) {
        if let Err(crossbeam_channel::SendError(job)) = self.jobs.send(job) {
            (job.on_done)(Err(Error::Unavailable(
                "The server is shutting down".into(),
            )));
        }
    }
}

fn run(conn: Connection, rx: Receiver<SendJob>, done: Sender<Vec<Outcome>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter().take(MAX_BATCH - 1));
        let outcomes = commit_batch(&conn, batch);
        if done.send(outcomes).is_err() {
            break;
        }
    }
}

fn commit_batch(conn: &Connection, batch: Vec<SendJob>) -> Vec<Outcome> {
    let fail_all = |batch: Vec<SendJob>, e: rusqlite::Error| -> Vec<Outcome> {
        let err = Error::from(e);
        batch.into_iter().map(|j| (j, Err(err.clone()))).collect()
    };
    let tx = match store::write_tx(conn) {
        Ok(tx) => tx,
        Err(e) => return fail_all(batch, e),
    };
    let mut results = Vec::with_capacity(batch.len());
    for job in &batch {
        let m = NewMessage {
            sender_id: job.sender_id,
            receiver_id: job.receiver_id,
            content: &job.content,
            // Stamped here, in commit order, so ids and times never disagree.
            now: store::now_us(),
        };
        results.push(insert_isolated(&tx, &m));
    }
    if let Err(e) = tx.commit() {
        // Nothing of the batch is on disk: every sender hears so.
        return fail_all(batch, e);
    }
    batch.into_iter().zip(results).collect()
}

/// One insert under a savepoint: on failure only this message is rolled back.
fn insert_isolated(conn: &Connection, m: &NewMessage) -> Result<SentMessage> {
    conn.prepare_cached("SAVEPOINT send")?.execute([])?;
    match store::chat::insert_message(conn, m) {
        Ok(sent) => {
            conn.prepare_cached("RELEASE send")?.execute([])?;
            Ok(sent)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO send; RELEASE send");
            Err(e.into())
        }
    }
}

/// Publishes and answers committed batches, in commit order.
fn respond_all(rx: Receiver<Vec<Outcome>>, on_stored: &OnStored) {
    for batch in rx {
        for (job, result) in batch {
            let result = result.map(|sent| MessageRow {
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
            if let Ok(row) = &result {
                on_stored(row);
            }
            (job.on_done)(result);
        }
    }
}
