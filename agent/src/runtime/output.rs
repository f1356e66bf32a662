//! Where a guest's stdout and stderr go.
//!
//! `flotilla run` inherits the terminal, like `wasmtime run`; `-o json` and the
//! tests capture into a [`CaptureBuffer`] with a cap so a chatty guest cannot
//! grow the host's memory without bound. Bytes past the cap are counted, not
//! kept, and never make the guest's write fail.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// A destination for one of the guest's output streams.
#[derive(Clone, Debug, Default)]
pub enum Stdio {
    /// The host process's own stream.
    Inherit,
    /// Discarded.
    #[default]
    Null,
    /// Kept in memory, up to a cap.
    Capture(CaptureBuffer),
    /// Appended to a log file that rotates at a size.
    Log(LogWriter),
}

#[derive(Debug)]
struct LogState {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    written: u64,
    rotate_at: u64,
}

/// Guest output appended to a file; at `rotate_at` bytes the file is renamed
/// to `<name>.1` (replacing an older one) and a new one is started, so one
/// instance's logs never take more than twice that. Cloning shares the file,
/// so stdout and stderr interleave in order, as container logs do.
#[derive(Clone, Debug)]
pub struct LogWriter(Arc<Mutex<LogState>>);

impl LogWriter {
    /// Appends to `path` (created if missing).
    pub fn open(path: &std::path::Path, rotate_at: u64) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let written = file.metadata()?.len();
        Ok(Self(Arc::new(Mutex::new(LogState {
            path: path.to_path_buf(),
            file: Some(file),
            written,
            rotate_at,
        }))))
    }

    /// Appends a line written by the host (e.g. how a run ended).
    pub fn note(&self, line: &str) {
        self.append(format!("{line}\n").as_bytes());
    }

    fn append(&self, data: &[u8]) {
        use std::io::Write;
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if state.written >= state.rotate_at {
            let rotated = state.path.with_extension("log.1");
            state.file = None;
            let _ = std::fs::rename(&state.path, rotated);
            state.file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&state.path)
                .ok();
            state.written = 0;
        }
        // A full disk must not kill the guest: its output is dropped instead.
        if let Some(file) = state.file.as_mut() {
            if file.write_all(data).is_ok() {
                state.written += data.len() as u64;
            }
        }
    }
}

#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    cap: usize,
    dropped: u64,
}

/// Captured output with a byte cap; cloning shares the same buffer.
#[derive(Clone, Debug, Default)]
pub struct CaptureBuffer(Arc<Mutex<Captured>>);

impl CaptureBuffer {
    /// A buffer that keeps at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self(Arc::new(Mutex::new(Captured {
            cap,
            ..Captured::default()
        })))
    }

    /// The bytes kept so far.
    pub fn contents(&self) -> Vec<u8> {
        self.lock().bytes.clone()
    }

    /// The bytes kept so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock().bytes).into_owned()
    }

    /// How many bytes were written past the cap and dropped.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        // A panic while holding this lock cannot leave the buffer inconsistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn append(&self, data: &[u8]) {
        let mut captured = self.lock();
        let room = captured.cap.saturating_sub(captured.bytes.len());
        let kept = room.min(data.len());
        captured.bytes.extend_from_slice(&data[..kept]);
        captured.dropped += (data.len() - kept) as u64;
    }
}

/// A destination that takes every byte it is given (and never fails the
/// guest's write, whatever it does with them).
pub(crate) trait Append: Clone + Send + Sync + 'static {
    fn append(&self, data: &[u8]);
}

impl Append for CaptureBuffer {
    fn append(&self, data: &[u8]) {
        CaptureBuffer::append(self, data)
    }
}

impl Append for LogWriter {
    fn append(&self, data: &[u8]) {
        LogWriter::append(self, data)
    }
}

/// Adapts an [`Append`] destination to a WASI output stream.
#[derive(Clone)]
pub(crate) struct AppendStream<A>(pub A);

impl<A: Append> IsTerminal for AppendStream<A> {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl<A: Append> StdoutStream for AppendStream<A> {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl<A: Append> AsyncWrite for AppendStream<A> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_the_cap_and_counts_the_rest() {
        let b = CaptureBuffer::new(4);
        b.append(b"abc");
        b.append(b"defg");
        assert_eq!(b.contents(), b"abcd");
        assert_eq!(b.dropped(), 3);
    }
}
