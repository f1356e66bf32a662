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

impl IsTerminal for CaptureBuffer {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureBuffer {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CaptureBuffer {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
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
