//! The HTTP/1.1 endpoint Prometheus scrapes: `GET /metrics` answers the
//! registry in the Prometheus text format; any other path is 404, another
//! method on `/metrics` 405.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{encoding::prometheus_text, registry::Registry};
use tokio::{net::TcpListener, task::JoinSet};

/// How long a client may take to send a request's headers; a connection
/// that sends nothing is closed after it.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `registry` on `listener` until dropped; dropping it closes the
/// listener and every connection.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let registry = registry.clone();
                    let answer = service_fn(move |request| {
                        std::future::ready(Ok::<_, Infallible>(answer(&registry, &request)))
                    });
                    connections.spawn(async move {
                        let served = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_READ_TIMEOUT)
                            .serve_connection(TokioIo::new(socket), answer)
                            .await;
                        if let Err(error) = served {
                            tracing::debug!(%error, "a metrics connection failed");
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors, say: try again shortly
                    // rather than spin.
                    tracing::warn!(%error, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

/// The answer to `request`.
fn answer(registry: &Registry, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut text = String::new();
    if let Err(error) = prometheus_text::encode(&mut text, registry) {
        tracing::error!(%error, "encoding the metrics failed");
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        );
    }
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
