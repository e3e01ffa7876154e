//! Per-call gRPC metrics with go-grpc-prometheus's names and labels, in the
//! outermost tower layer (so it sees the calls that authentication and the
//! limits refuse): calls started, handled by status code, handling time,
//! and messages received and sent.
//!
//! A call's code comes from the `grpc-status` of a trailers-only answer's
//! headers, otherwise from its body's trailers, so a stream counts when it
//! ends, and one whose client goes away first counts as `Canceled`.
//!
//! The methods are read once from the descriptor sets the server serves;
//! each has its metric handles resolved on its first call, so a call costs
//! a map lookup and a few atomic increments, never a label set built and
//! hashed. A path that names no method is counted under one fixed
//! `unknown` label set: a client cannot create series at will.

use std::{
    collections::HashMap,
    error::Error as StdError,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll, ready},
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use prost_reflect::DescriptorPool;
use tonic::body::Body;
use tower::{Layer, Service};

/// What a layer's service fails with (tonic's own box).
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// go-grpc-prometheus's default handling-time buckets (Prometheus'
/// `DefBuckets`), in seconds.
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The status codes as go-grpc-prometheus writes them (`codes.Code`'s
/// names), by number.
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

/// A method's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
}

/// A method's labels and a status code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

type HistogramFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

fn handling_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The metric families, shared by every method.
#[derive(Clone)]
struct Families {
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    handling: HistogramFamily,
    received: Family<MethodLabels, Counter>,
    sent: Family<MethodLabels, Counter>,
}

/// How a method streams, as go-grpc-prometheus's `grpc_type` says it.
fn grpc_type(client_streaming: bool, server_streaming: bool) -> &'static str {
    match (client_streaming, server_streaming) {
        (false, false) => "unary",
        (true, false) => "client_stream",
        (false, true) => "server_stream",
        (true, true) => "bidi_stream",
    }
}

/// One method's handles, resolved on its first call.
struct Handles {
    started: Counter,
    handling: Histogram,
    received: Counter,
    sent: Counter,
}

/// One method: its labels and, once called, its handles.
struct Method {
    labels: MethodLabels,
    /// Whether the client sends a stream (its messages are counted as
    /// they arrive; otherwise the call's one request counts at once).
    client_streaming: bool,
    handles: OnceLock<Handles>,
    handled: [OnceLock<Counter>; 17],
}

impl Method {
    fn new(labels: MethodLabels, client_streaming: bool) -> Self {
        Self {
            labels,
            client_streaming,
            handles: OnceLock::new(),
            handled: Default::default(),
        }
    }

    fn handles(&self, families: &Families) -> &Handles {
        self.handles.get_or_init(|| Handles {
            started: families.started.get_or_create_owned(&self.labels),
            handling: families.handling.get_or_create_owned(&self.labels),
            received: families.received.get_or_create_owned(&self.labels),
            sent: families.sent.get_or_create_owned(&self.labels),
        })
    }

    fn handled(&self, families: &Families, code: usize) -> &Counter {
        self.handled[code].get_or_init(|| {
            families.handled.get_or_create_owned(&HandledLabels {
                grpc_type: self.labels.grpc_type,
                grpc_service: self.labels.grpc_service.clone(),
                grpc_method: self.labels.grpc_method.clone(),
                grpc_code: CODE_NAMES[code],
            })
        })
    }
}

/// The server's gRPC metrics: every method it serves, by path.
pub struct GrpcMetrics {
    families: Families,
    by_path: HashMap<String, usize>,
    /// The methods, and last the `unknown` one.
    methods: Vec<Method>,
}

impl GrpcMetrics {
    /// The metrics of every method of the services in `descriptor_sets`
    /// (encoded `FileDescriptorSet`s), registered in `registry`.
    pub fn new(
        descriptor_sets: &[&[u8]],
        registry: &mut Registry,
    ) -> Result<Self, prost_reflect::DescriptorError> {
        let families = Families {
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(handling_histogram),
            received: Family::default(),
            sent: Family::default(),
        };
        registry.register(
            "grpc_server_started",
            "Total number of RPCs started on the server",
            families.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure",
            families.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server",
            families.handling.clone(),
        );
        registry.register(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server",
            families.received.clone(),
        );
        registry.register(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server",
            families.sent.clone(),
        );
        let mut by_path = HashMap::new();
        let mut methods = Vec::new();
        for set in descriptor_sets {
            let pool = DescriptorPool::decode(*set)?;
            for service in pool.services() {
                for method in service.methods() {
                    let path = format!("/{}/{}", service.full_name(), method.name());
                    let labels = MethodLabels {
                        grpc_type: grpc_type(
                            method.is_client_streaming(),
                            method.is_server_streaming(),
                        ),
                        grpc_service: service.full_name().to_owned(),
                        grpc_method: method.name().to_owned(),
                    };
                    by_path.entry(path).or_insert_with(|| {
                        methods.push(Method::new(labels, method.is_client_streaming()));
                        methods.len() - 1
                    });
                }
            }
        }
        let unknown = MethodLabels {
            grpc_type: "unknown",
            grpc_service: "unknown".into(),
            grpc_method: "unknown".into(),
        };
        methods.push(Method::new(unknown, false));
        Ok(Self {
            families,
            by_path,
            methods,
        })
    }

    /// The index of the method at `path` (the `unknown` one for any other).
    fn method(&self, path: &str) -> usize {
        self.by_path
            .get(path)
            .copied()
            .unwrap_or(self.methods.len() - 1)
    }
}

/// Adds the gRPC metrics to every call; with `None` it only passes calls
/// through (metrics off).
#[derive(Clone)]
pub struct CallMetricsLayer {
    metrics: Option<Arc<GrpcMetrics>>,
}

impl CallMetricsLayer {
    /// Counts calls in `metrics`, or nothing.
    pub fn new(metrics: Option<Arc<GrpcMetrics>>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for CallMetricsLayer {
    type Service = CallMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`CallMetricsLayer`] wraps around the server's.
#[derive(Clone)]
pub struct CallMetrics<S> {
    inner: S,
    metrics: Option<Arc<GrpcMetrics>>,
}

impl<S, B> Service<Request<Body>> for CallMetrics<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<MeteredBody<B>>;
    type Error = BoxError;
    type Future = CallFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let Some(metrics) = &self.metrics else {
            return CallFuture {
                inner: self.inner.call(request),
                call: None,
            };
        };
        let index = metrics.method(request.uri().path());
        let method = &metrics.methods[index];
        let handles = method.handles(&metrics.families);
        handles.started.inc();
        let request = if method.client_streaming {
            let received = handles.received.clone();
            request.map(|body| Body::new(MeteredBody::counting(body, received)))
        } else {
            handles.received.inc();
            request
        };
        CallFuture {
            inner: self.inner.call(request),
            call: Some(Call {
                metrics: metrics.clone(),
                method: index,
                started: Instant::now(),
                finished: false,
            }),
        }
    }
}

/// A call under way, counted when it finishes; one dropped unfinished
/// (its client went away) counts as `Canceled`.
struct Call {
    metrics: Arc<GrpcMetrics>,
    method: usize,
    started: Instant,
    finished: bool,
}

impl Call {
    fn finish(&mut self, code: usize) {
        if self.finished {
            return;
        }
        self.finished = true;
        let method = &self.metrics.methods[self.method];
        let families = &self.metrics.families;
        method.handled(families, code).inc();
        method
            .handles(families)
            .handling
            .observe(self.started.elapsed().as_secs_f64());
    }

    fn sent(&self) -> Counter {
        self.metrics.methods[self.method]
            .handles(&self.metrics.families)
            .sent
            .clone()
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(CANCELED);
    }
}

/// The code of a `grpc-status` header or trailer, if there is one.
fn status_code(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get("grpc-status")?;
    let code = std::str::from_utf8(value.as_bytes())
        .ok()
        .and_then(|text| text.parse::<usize>().ok())
        .filter(|&code| code < CODE_NAMES.len());
    Some(code.unwrap_or(UNKNOWN))
}

/// The code of an error a service failed with, as tonic answers it.
fn error_code(error: &BoxError) -> usize {
    error
        .downcast_ref::<tonic::Status>()
        .map_or(UNKNOWN, |status| status.code() as usize)
}

pin_project_lite::pin_project! {
    /// The response future of [`CallMetrics`].
    pub struct CallFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, B, E> Future for CallFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<MeteredBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx)).map_err(Into::into);
        let Some(mut call) = this.call.take() else {
            return Poll::Ready(result.map(|response| response.map(MeteredBody::plain)));
        };
        Poll::Ready(match result {
            Err(error) => {
                call.finish(error_code(&error));
                Err(error)
            }
            Ok(response) => match status_code(response.headers()) {
                // Trailers-only: the answer is in the headers, the body
                // is empty.
                Some(code) => {
                    call.finish(code);
                    Ok(response.map(MeteredBody::plain))
                }
                None => Ok(response.map(|body| MeteredBody::answering(body, call))),
            },
        })
    }
}

/// Counts gRPC messages in a stream of bytes: each is a 5-byte prefix
/// (compression flag, 32-bit length) and that many bytes, and chunks cut
/// them anywhere.
#[derive(Debug, Default)]
struct Frames {
    prefix: [u8; 5],
    prefix_read: usize,
    payload_left: u64,
}

impl Frames {
    /// Reads `data`; returns how many messages began in it.
    fn read(&mut self, mut data: &[u8]) -> u64 {
        let mut began = 0;
        loop {
            if self.payload_left > 0 {
                let skip = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.payload_left -= skip as u64;
                data = &data[skip..];
            }
            if data.is_empty() {
                return began;
            }
            let take = (5 - self.prefix_read).min(data.len());
            self.prefix[self.prefix_read..self.prefix_read + take].copy_from_slice(&data[..take]);
            self.prefix_read += take;
            data = &data[take..];
            if self.prefix_read == 5 {
                began += 1;
                self.prefix_read = 0;
                let [_, a, b, c, d] = self.prefix;
                self.payload_left = u64::from(u32::from_be_bytes([a, b, c, d]));
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A body passed through, counting its messages into a counter and,
    /// for a response, finishing its call at the trailers.
    pub struct MeteredBody<B> {
        // Dropped first (fields drop in order): a call the client left is
        // counted before what the inner body holds (a limits slot) is
        // given back, which is what a waiter on that release can rely on.
        call: Option<Call>,
        #[pin]
        inner: B,
        counting: Option<(Frames, Counter)>,
    }
}

impl<B> MeteredBody<B> {
    /// `inner`, unobserved.
    fn plain(inner: B) -> Self {
        Self {
            inner,
            counting: None,
            call: None,
        }
    }

    /// `inner`, its messages counted into `messages`.
    fn counting(inner: B, messages: Counter) -> Self {
        Self {
            inner,
            counting: Some((Frames::default(), messages)),
            call: None,
        }
    }

    /// The response body of `call`: its messages counted as sent, and the
    /// call finished with the code of its trailers.
    fn answering(inner: B, call: Call) -> Self {
        Self {
            inner,
            counting: Some((Frames::default(), call.sent())),
            call: Some(call),
        }
    }
}

impl<B> HttpBody for MeteredBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = ready!(this.inner.poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let (Some(data), Some((frames, messages))) = (frame.data_ref(), this.counting) {
                    let began = frames.read(data);
                    if began > 0 {
                        messages.inc_by(began);
                    }
                }
                if let (Some(trailers), Some(call)) = (frame.trailers_ref(), this.call.as_mut()) {
                    call.finish(status_code(trailers).unwrap_or(UNKNOWN));
                }
            }
            Some(Err(_)) => {}
            // Ended without trailers: no status was sent.
            None => {
                if let Some(call) = this.call.as_mut() {
                    call.finish(UNKNOWN);
                }
            }
        }
        Poll::Ready(polled.map(|result| {
            result.map_err(|error| {
                let error = error.into();
                if let Some(call) = this.call.as_mut() {
                    call.finish(error_code(&error));
                }
                error
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend(std::iter::repeat_n(7, len as usize));
        bytes
    }

    #[test]
    fn messages_are_counted_however_the_chunks_cut_them() {
        let stream: Vec<u8> = [message(3), message(0), message(300), message(1)].concat();
        for chunk in [1, 2, 4, 5, 6, 7, 64, stream.len()] {
            let mut frames = Frames::default();
            let began: u64 = stream.chunks(chunk).map(|c| frames.read(c)).sum();
            assert_eq!(began, 4, "chunks of {chunk}");
            assert_eq!((frames.prefix_read, frames.payload_left), (0, 0));
        }
    }

    #[test]
    fn status_codes_read_as_go_grpc_prometheus_names_them() {
        let code = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-status", value.parse().unwrap());
            status_code(&headers).map(|c| CODE_NAMES[c])
        };
        assert_eq!(code("0"), Some("OK"));
        assert_eq!(code("3"), Some("InvalidArgument"));
        assert_eq!(code("16"), Some("Unauthenticated"));
        assert_eq!(code("17"), Some("Unknown"));
        assert_eq!(code("x"), Some("Unknown"));
        assert_eq!(status_code(&HeaderMap::new()), None);
        assert_eq!(CODE_NAMES[tonic::Code::Unavailable as usize], "Unavailable");
        assert_eq!(CODE_NAMES[tonic::Code::DataLoss as usize], "DataLoss");
    }

    #[test]
    fn every_served_method_has_its_type_and_unknown_paths_share_one_label_set() {
        let mut registry = Registry::default();
        let metrics = GrpcMetrics::new(
            &[
                crate::pb::FILE_DESCRIPTOR_SET,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
            ],
            &mut registry,
        )
        .unwrap();
        let labels = |path: &str| &metrics.methods[metrics.method(path)].labels;
        let get = labels("/crm.v1.CustomerService/GetCustomer");
        assert_eq!(
            (
                get.grpc_type,
                get.grpc_service.as_str(),
                get.grpc_method.as_str()
            ),
            ("unary", "crm.v1.CustomerService", "GetCustomer")
        );
        assert_eq!(
            labels("/crm.v1.CustomerService/ImportCustomers").grpc_type,
            "bidi_stream"
        );
        assert_eq!(
            labels("/crm.v1.RelationshipService/WatchRelationshipChanges").grpc_type,
            "server_stream"
        );
        assert_eq!(labels("/grpc.health.v1.Health/Check").grpc_type, "unary");
        assert_eq!(labels("/evil/x1").grpc_method, "unknown");
        assert_eq!(metrics.method("/evil/x1"), metrics.method("/evil/x2"));
    }
}
