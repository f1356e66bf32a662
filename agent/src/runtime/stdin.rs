//! What a guest reads on stdin: whole bytes (tests, `flotilla run`), or a
//! stream with a byte cap — a WAGI request body, passed on as it arrives so
//! the host never holds more than a chunk of it, whatever its size.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use wasmtime_wasi::cli::{AsyncStdinStream, IsTerminal, StdinStream};

/// A guest's stdin; cloning shares the stream.
#[derive(Clone)]
pub struct Stdin {
    stream: Arc<AsyncStdinStream>,
    overflowed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Stdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stdin")
            .field("overflowed", &self.overflowed())
            .finish()
    }
}

impl Stdin {
    /// `bytes`, then end of file.
    pub fn bytes(bytes: Bytes) -> Self {
        Self::from_reader(std::io::Cursor::new(bytes), Arc::default())
    }

    /// The chunks of `chunks` as they arrive; past `cap` bytes the guest's
    /// read fails (and [`Stdin::overflowed`] says so) instead of the host
    /// buffering more.
    pub fn stream<S, E>(chunks: S, cap: u64) -> Self
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Sync + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let overflowed: Arc<AtomicBool> = Arc::default();
        let flag = overflowed.clone();
        let seen = AtomicU64::new(0);
        let capped = chunks.map(move |chunk| {
            let chunk = chunk.map_err(|e| std::io::Error::other(e.into()))?;
            let total = seen.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
            if total > cap {
                flag.store(true, Ordering::Relaxed);
                return Err(std::io::Error::other(format!(
                    "the request body is larger than {cap} bytes"
                )));
            }
            Ok(chunk)
        });
        Self::from_reader(tokio_util::io::StreamReader::new(capped), overflowed)
    }

    fn from_reader(
        reader: impl tokio::io::AsyncRead + Send + Sync + 'static,
        overflowed: Arc<AtomicBool>,
    ) -> Self {
        Self {
            stream: Arc::new(AsyncStdinStream::new(reader)),
            overflowed,
        }
    }

    /// Whether the stream passed its cap.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }
}

impl IsTerminal for Stdin {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for Stdin {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::InputStream> {
        self.stream.p2_stream()
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        self.stream.async_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn chunks(n: usize) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync {
        futures_util::stream::iter((0..n).map(|_| Ok(Bytes::from(vec![b'x'; 1000]))))
    }

    #[tokio::test]
    async fn a_stream_within_its_cap_reads_whole() {
        let stdin = Stdin::stream(chunks(3), 3000);
        let mut read = Vec::new();
        Box::into_pin(stdin.async_stream())
            .read_to_end(&mut read)
            .await
            .unwrap();
        assert_eq!(read.len(), 3000);
        assert!(!stdin.overflowed());
    }

    #[tokio::test]
    async fn a_stream_past_its_cap_fails_the_read_and_says_so() {
        let stdin = Stdin::stream(chunks(5), 2500);
        let mut read = Vec::new();
        let error = Box::into_pin(stdin.async_stream())
            .read_to_end(&mut read)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("larger than 2500 bytes"),
            "{error}"
        );
        assert!(read.len() <= 2500, "{}", read.len());
        assert!(stdin.overflowed());
    }
}
