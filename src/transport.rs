//! What happens below the gRPC handlers: new connections must send the
//! HTTP/2 preface within a deadline, and requests tonic cannot read get
//! the status codes of the gRPC convention instead of tonic's own.

use std::{
    collections::HashMap,
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};
use tonic::{Code, Status, codegen::http, transport::server::Connected};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::ERROR_DOMAIN;

/// Length of the HTTP/2 connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`),
/// the first bytes every client sends.
const PREFACE_LEN: usize = 24;

/// A new connection that fails its reads once `timeout` passes before the
/// client has sent the HTTP/2 preface, so the server drops it.
///
/// Neither hyper nor tonic bounds the time to the preface (HTTP/2
/// keepalive pings start only after the handshake), so a client that opens
/// sockets and sends nothing would hold a descriptor each for as long as
/// TCP keeps them. Wrapping the socket is the one place that sees those
/// bytes arrive; once the preface is in, the wrapper only passes reads
/// through.
pub struct HandshakeDeadline<IO> {
    io: IO,
    /// Running until the preface is in; `None` after.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Bytes of the preface still to come.
    awaited: usize,
}

impl<IO> HandshakeDeadline<IO> {
    /// `io`, closed unless the preface arrives within `timeout`.
    pub fn new(io: IO, timeout: Duration) -> Self {
        Self {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            awaited: PREFACE_LEN,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for HandshakeDeadline<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(deadline) = &mut this.deadline else {
            return read;
        };
        match read {
            Poll::Ready(Ok(())) => {
                this.awaited = this
                    .awaited
                    .saturating_sub(buf.filled().len().saturating_sub(before));
                if this.awaited == 0 {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            // Polling the timer registers the task to be woken at the
            // deadline even if the client never sends a byte.
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no HTTP/2 preface within the handshake timeout",
                )))
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for HandshakeDeadline<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for HandshakeDeadline<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// The statuses tonic answers, before any handler runs, for a request
/// whose bytes it cannot read, and the codes the gRPC convention gives
/// them: a message that is not valid protobuf of its type (bad UTF-8,
/// truncated, wrong wire type) or a body that ends inside a message is the
/// caller's mistake, INVALID_ARGUMENT rather than tonic's INTERNAL; a
/// message over the size limit is RESOURCE_EXHAUSTED rather than
/// OUT_OF_RANGE (which this service keeps for a change stream resumed past
/// its retention).
///
/// Why rewrite the answer rather than decode differently: the size check
/// and the end-of-body check live in tonic's framing, which no codec sees,
/// so a custom codec would fix one case of three. The statuses are told
/// apart by code *and* tonic's wording (pinned by Cargo.lock; the tests in
/// `tests/api/hostile_transport.rs` fail if it changes), so a status a
/// handler chose is never rewritten. tonic's detail (prost's reason and
/// the field it failed in, never the bytes) follows our sentence.
const UNREADABLE_REQUESTS: [(Code, &str, Code, &str); 3] = [
    (
        Code::Internal,
        "failed to decode Protobuf message",
        Code::InvalidArgument,
        "the request is not a valid protobuf message of its type",
    ),
    (
        Code::Internal,
        "Unexpected EOF decoding stream",
        Code::InvalidArgument,
        "the request body ends inside a message",
    ),
    (
        Code::OutOfRange,
        "Error, decoded message length too large",
        Code::ResourceExhausted,
        "the request message is larger than the server accepts",
    ),
];

/// Gives a response carrying one of tonic's [`UNREADABLE_REQUESTS`]
/// statuses the conventional code. Requests tonic cannot read are answered
/// before any handler runs, as trailers-only responses, so the status is in
/// the headers. A message over the size limit also gets ErrorInfo
/// `REQUEST_TOO_LARGE` with the limit (`max_request_bytes`), so a program
/// can tell it from the other RESOURCE_EXHAUSTED answers.
pub fn reclassify_unreadable<B>(
    mut response: http::Response<B>,
    max_request_bytes: usize,
) -> http::Response<B> {
    // Answers with a body carry their status in the trailers.
    if !response.headers().contains_key("grpc-status") {
        return response;
    }
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let found = UNREADABLE_REQUESTS
        .iter()
        .find(|(code, prefix, ..)| status.code() == *code && status.message().starts_with(prefix));
    if let Some((_, prefix, code, sentence)) = found {
        let detail = status.message()[prefix.len()..].trim_start_matches([':', ',', '.', ' ']);
        let message = if detail.is_empty() {
            (*sentence).to_owned()
        } else {
            format!("{sentence}: {detail}")
        };
        let status = if *code == Code::ResourceExhausted {
            too_large(message, max_request_bytes)
        } else {
            Status::new(*code, message)
        };
        if status.add_header(response.headers_mut()).is_err() {
            tracing::debug!(%detail, "could not rewrite the status of an unreadable request");
        }
    }
    response
}

/// RESOURCE_EXHAUSTED for a request message over `max_request_bytes`.
fn too_large(message: String, max_request_bytes: usize) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        message,
        ErrorDetails::with_error_info(
            "REQUEST_TOO_LARGE",
            ERROR_DOMAIN,
            HashMap::from([(
                "max_request_bytes".to_owned(),
                max_request_bytes.to_string(),
            )]),
        ),
    )
}
