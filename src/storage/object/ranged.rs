//! Reading a large object by several ranged GETs at once.
//!
//! One GET streams at one connection's pace (S3 serves about 100 MB/s per connection, a busy
//! S3-compatible server less), and that pace was the pace of a multi-GiB layer's copy. So past its first
//! `RANGE` bytes, which stream from the first answer, a large object is read as ranges of `RANGE` bytes,
//! up to `PER_OBJECT` of them at once, each read whole ahead of the copy.
//!
//! The bytes read ahead come from the run's `ReadAhead`: a fixed number of ranges shared by every
//! object being read, so memory stays within it whatever the images. An object that finds none free
//! reads its next range as a plain stream (one connection's pace, no memory held), and never waits for
//! one: an object only holds ranges it will hand out next, so no reader can block another for good.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::{FutureExt, RemoteHandle};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{broke_off, retrying, ByteStream, ObjectBackend, Span, StorageError};

/// The bytes of one ranged GET.
pub const RANGE: u64 = 4 << 20;
/// Ranges of one object read ahead at once, at most. Measured on one 2 GiB blob from s3s-fs on 2 cores
/// (`cargo bench --bench memory`): one stream took 22 s, 4 ranges of 8 MiB 11.3 s, 8 of 4 MiB 10 to
/// 12 s, 12 of 4 MiB 10.1 to 10.3 s.
pub const PER_OBJECT: usize = 12;
/// Ranges read ahead at once across a whole run, by default: 48 MiB of memory.
pub const READ_AHEAD_RANGES: usize = 12;
/// The size of the pieces a range is kept in, so that its memory goes back piece by piece as it is
/// handed out (the same size as a piece read from a file).
const PIECE: usize = 512 * 1024;

/// The run's budget of ranges read ahead of the copy, shared by every object being read.
#[derive(Clone)]
pub struct ReadAhead(Arc<Semaphore>);

impl ReadAhead {
    pub fn new(ranges: usize) -> ReadAhead {
        ReadAhead(Arc::new(Semaphore::new(ranges)))
    }

    /// A range's share of the budget, if one is free now.
    fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }
}

impl Default for ReadAhead {
    fn default() -> ReadAhead {
        ReadAhead::new(READ_AHEAD_RANGES)
    }
}

/// Opens an object as a stream of its bytes from byte `from` on, with the object's whole size; `None`
/// when it does not exist. Tried again until the first answer starts; a stream that breaks off later
/// is the reader's to open again where it stopped.
pub async fn open(
    store: &Arc<ObjectBackend>,
    key: &str,
    from: u64,
    read_ahead: &ReadAhead,
) -> Result<Option<(u64, ByteStream)>, StorageError> {
    let span = Span::from(from);
    let Some(response) = retrying(store.client(), || store.get(key, span)).await? else { return Ok(None) };
    let size = object_size(key, &response, span)?;
    let body = body_stream(key, response);
    if size.saturating_sub(from) <= 2 * RANGE {
        return Ok(Some((size, body)));
    }
    let mut reader = RangedReader {
        store: store.clone(),
        key: key.into(),
        size,
        next: from + RANGE,
        ahead: VecDeque::new(),
        current: Current::Streaming(take(body, RANGE)),
        read_ahead: read_ahead.clone(),
    };
    reader.read_ahead();
    let stream = futures::stream::unfold(reader, |mut reader| async move {
        let piece = reader.next_piece().await?;
        Some((piece, reader))
    });
    Ok(Some((size, Box::pin(stream))))
}

/// A range read whole, kept in pieces, holding its share of the read-ahead until its last piece is
/// handed out.
struct ReadRange {
    pieces: VecDeque<Bytes>,
    _share: OwnedSemaphorePermit,
}

/// What the reader hands out now.
enum Current {
    Nothing,
    /// A range read ahead.
    Read(ReadRange),
    /// A range streaming from its answer (the first one, or one that found no read-ahead free).
    Streaming(ByteStream),
}

/// An object read range by range, some ranges ahead of the copy.
struct RangedReader {
    store: Arc<ObjectBackend>,
    key: Arc<str>,
    size: u64,
    /// The first byte no range has asked for yet.
    next: u64,
    /// The ranges being read ahead, in order; dropping one stops its read.
    ahead: VecDeque<RemoteHandle<Result<ReadRange, StorageError>>>,
    current: Current,
    read_ahead: ReadAhead,
}

impl RangedReader {
    /// The next range to ask for.
    fn next_span(&mut self) -> Span {
        let end = (self.next + RANGE).min(self.size);
        let span = Span { start: self.next, end: Some(end) };
        self.next = end;
        span
    }

    /// Starts reading the next ranges, as many as the run's read-ahead has free (up to `PER_OBJECT`).
    fn read_ahead(&mut self) {
        while self.ahead.len() < PER_OBJECT && self.next < self.size {
            let Some(share) = self.read_ahead.try_take() else { break };
            let span = self.next_span();
            let (read, handle) = read_range(self.store.clone(), self.key.clone(), span, share).remote_handle();
            tokio::spawn(read);
            self.ahead.push_back(handle);
        }
    }

    async fn next_piece(&mut self) -> Option<std::io::Result<Bytes>> {
        loop {
            match &mut self.current {
                Current::Read(range) => {
                    if let Some(piece) = range.pieces.pop_front() {
                        return Some(Ok(piece));
                    }
                }
                Current::Streaming(stream) => {
                    if let Some(piece) = stream.next().await {
                        return Some(piece);
                    }
                }
                Current::Nothing => {}
            }
            // The range handed out is done: its share goes back before more are taken.
            self.current = Current::Nothing;
            self.read_ahead();
            self.current = if let Some(range) = self.ahead.pop_front() {
                match range.await {
                    Ok(range) => Current::Read(range),
                    Err(error) => return Some(Err(std::io::Error::other(error))),
                }
            } else if self.next < self.size {
                let span = self.next_span();
                match open_span(&self.store, &self.key, span).await {
                    Ok(stream) => Current::Streaming(stream),
                    Err(error) => return Some(Err(std::io::Error::other(error))),
                }
            } else {
                return None;
            };
        }
    }
}

/// Reads the bytes of `span` whole (tried again as a whole), in pieces.
async fn read_range(
    store: Arc<ObjectBackend>,
    key: Arc<str>,
    span: Span,
    share: OwnedSemaphorePermit,
) -> Result<ReadRange, StorageError> {
    let pieces = retrying(store.client(), || async {
        let mut response = ranged_answer(&store, &key, span).await?;
        let mut pieces = VecDeque::new();
        let mut piece = BytesMut::with_capacity(PIECE);
        while let Some(chunk) = response.chunk().await.map_err(|e| broke_off("read", &key, e))? {
            let mut chunk = &chunk[..];
            while !chunk.is_empty() {
                let room = (PIECE - piece.len()).min(chunk.len());
                piece.extend_from_slice(&chunk[..room]);
                chunk = &chunk[room..];
                if piece.len() == PIECE {
                    pieces.push_back(std::mem::replace(&mut piece, BytesMut::with_capacity(PIECE)).freeze());
                }
            }
        }
        if !piece.is_empty() {
            pieces.push_back(piece.freeze());
        }
        Ok(pieces)
    })
    .await?;
    Ok(ReadRange { pieces, _share: share })
}

/// Opens the bytes of `span` as a stream.
async fn open_span(store: &Arc<ObjectBackend>, key: &str, span: Span) -> Result<ByteStream, StorageError> {
    let response = retrying(store.client(), || ranged_answer(store, key, span)).await?;
    Ok(body_stream(key, response))
}

/// The answer to a GET of `span` (a part of the object), checked to hold exactly those bytes.
async fn ranged_answer(store: &ObjectBackend, key: &str, span: Span) -> Result<reqwest::Response, StorageError> {
    let gone = || unreadable(key, "the object went away while it was read");
    let response = store.get(key, span).await?.ok_or_else(gone)?;
    object_size(key, &response, span)?;
    let wanted = span.end.map(|end| end - span.start);
    if response.status() != reqwest::StatusCode::PARTIAL_CONTENT || response.content_length() != wanted {
        return Err(unreadable(key, "the store did not send the byte range asked for"));
    }
    Ok(response)
}

/// The object's whole size, from an answer to a GET of `span`.
fn object_size(key: &str, response: &reqwest::Response, span: Span) -> Result<u64, StorageError> {
    let length = response.content_length().ok_or_else(|| unreadable(key, "the answer has no Content-Length"))?;
    match response.headers().get(reqwest::header::CONTENT_RANGE) {
        // `bytes FIRST-LAST/SIZE`: the store sent the range asked for.
        Some(range) => range
            .to_str()
            .ok()
            .and_then(|range| range.rsplit_once('/')?.1.parse().ok())
            .ok_or_else(|| unreadable(key, "unreadable Content-Range")),
        None if span.header().is_none() => Ok(length),
        None => Err(unreadable(key, "the store ignored the byte range asked for")),
    }
}

/// An answer's body as a stream of bytes.
fn body_stream(key: &str, response: reqwest::Response) -> ByteStream {
    let key = key.to_string();
    Box::pin(
        response.bytes_stream().map(move |chunk| chunk.map_err(|e| std::io::Error::other(broke_off("read", &key, e)))),
    )
}

/// The first `len` bytes of `stream` (the rest is never asked for: the stream is dropped there).
fn take(stream: ByteStream, len: u64) -> ByteStream {
    Box::pin(futures::stream::unfold((stream, len), |(mut stream, left)| async move {
        if left == 0 {
            return None;
        }
        match stream.next().await? {
            Ok(mut chunk) => {
                chunk.truncate(left.min(chunk.len() as u64) as usize);
                let left = left - chunk.len() as u64;
                Some((Ok(chunk), (stream, left)))
            }
            Err(error) => Some((Err(error), (stream, 0))),
        }
    }))
}

fn unreadable(key: &str, message: &str) -> StorageError {
    StorageError::Parse { operation: "read", target: key.to_string(), message: message.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_ask_for_their_bytes() {
        assert_eq!(Span::from(0).header(), None);
        assert_eq!(Span::from(5).header().as_deref(), Some("bytes=5-"));
        assert_eq!(Span { start: 8, end: Some(16) }.header().as_deref(), Some("bytes=8-15"));
    }

    #[tokio::test]
    async fn take_stops_at_its_length() {
        let chunks = ["abc", "defg", "hij"].map(|c| Ok(Bytes::from_static(c.as_bytes())));
        let taken: Vec<_> = take(Box::pin(futures::stream::iter(chunks)), 5).collect().await;
        let taken: Vec<u8> = taken.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
        assert_eq!(taken, b"abcde");
    }

    #[test]
    fn the_read_ahead_is_shared() {
        let budget = ReadAhead::new(2);
        let (first, second) = (budget.try_take(), budget.try_take());
        assert!(first.is_some() && second.is_some());
        assert!(budget.clone().try_take().is_none(), "a third range would pass the budget");
        drop(first);
        assert!(budget.try_take().is_some(), "a range handed out gives its share back");
    }
}
