//! Standard input for the file source: lines read by a thread of their own (a blocking read
//! must not hold up the async runtime, the batch timer or other sources), handed over through
//! a bounded channel. The end of the input is the end of the source; a last line without a
//! newline is complete then.

use std::io::BufRead;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};

/// Lines of stdin, as they arrive.
pub(super) struct StdinLines {
    rx: Receiver<std::io::Result<Vec<u8>>>,
    /// The input ended and every line was handed out.
    pub ended: bool,
    /// Lines handed out so far.
    pub consumed: u64,
}

impl StdinLines {
    /// Starts the reading thread.
    pub fn start() -> Self {
        let (tx, rx) = sync_channel(4096);
        std::thread::Builder::new()
            .name("lake-stdin".into())
            .spawn(move || read_all(tx))
            .expect("cannot start the stdin reader thread");
        Self { rx, ended: false, consumed: 0 }
    }

    /// The next line (with its newline, if it had one), or `None` when none is there now.
    pub fn next(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        match self.rx.try_recv() {
            Ok(Ok(line)) => {
                self.consumed += 1;
                Ok(Some(line))
            }
            Ok(Err(e)) => Err(e),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => {
                self.ended = true;
                Ok(None)
            }
        }
    }
}

fn read_all(tx: SyncSender<std::io::Result<Vec<u8>>>) {
    let mut input = std::io::stdin().lock();
    loop {
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                if tx.send(Ok(line)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}
