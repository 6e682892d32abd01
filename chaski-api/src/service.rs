//! Services: named methods and attributes, called through serde-typed arguments.
//!
//! ```
//! use chaski_api::{decode, encode, CallContext, CallKind, NodeId, Service, ServiceError};
//!
//! let random = Service::builder().method("normal", |(mu, _sigma): (f64, f64)| Ok(mu)).build();
//! let svc = Service::builder()
//!     .method("add", |(a, b): (i64, i64)| Ok(a + b))
//!     .method("fail", |_: ()| Err::<(), _>(ServiceError::failed("bad thing")))
//!     .attr("name", "posix")
//!     .nested("random", random)
//!     .build();
//! let ctx = CallContext::new(NodeId(7), None);
//! let fut = svc.invoke(ctx, "add", CallKind::Call, encode(&(2, 3)).unwrap());
//! let out = futures_executor_lite(fut).unwrap();
//! assert_eq!(decode::<i64>(&out).unwrap(), 5);
//! assert!(svc.paths().any(|p| p == "random.normal"));
//! # fn futures_executor_lite<F: std::future::Future>(f: F) -> F::Output {
//! #     use std::task::{Context, Poll, Waker};
//! #     let mut f = Box::pin(f);
//! #     match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) { Poll::Ready(v) => v, Poll::Pending => panic!() }
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use chaski_proto::{CallKind, RemoteError};

pub use crate::context::CallContext;
use crate::error::{Error, Result};

/// Serializes a value as CBOR (arguments and results of remote calls).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    let mut v = Vec::new();
    ciborium::into_writer(value, &mut v).map_err(|e| Error::Codec(e.to_string()))?;
    Ok(Bytes::from(v))
}

/// Deserializes a CBOR value. Numbers mean what a user means: where a float is expected, an
/// integer is taken too (a caller writing `[0, 1]` for two floats, from JSON or a language
/// without the distinction).
///
/// ```
/// let args = chaski_api::encode(&(0, 1)).unwrap();
/// let (lo, hi): (f64, f64) = chaski_api::decode(&args).unwrap();
/// assert_eq!((lo, hi), (0.0, 1.0));
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match chaski_proto::codec::decode_value::<T>(bytes) {
        Ok(v) => Ok(v),
        // CBOR keeps integers and floats apart and serde's CBOR reader will not widen one
        // into the other; read the value once more through JSON's data model, which does.
        Err(e) => chaski_proto::codec::decode_value::<ciborium::Value>(bytes)
            .ok()
            .and_then(|v| serde_json::to_value(v).ok())
            .and_then(|j| serde_json::from_value::<T>(j).ok())
            .ok_or_else(|| Error::Codec(e.to_string())),
    }
}

/// What a method returns on failure; travels to the caller as a typed [`RemoteError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError(RemoteError);

impl ServiceError {
    /// The method ran and failed with this message.
    pub fn failed(msg: impl fmt::Display) -> Self {
        ServiceError(RemoteError::Failed(msg.to_string()))
    }

    /// The arguments did not fit.
    pub fn bad_arguments(msg: impl fmt::Display) -> Self {
        ServiceError(RemoteError::BadArguments(msg.to_string()))
    }
}

impl From<String> for ServiceError {
    fn from(s: String) -> Self {
        ServiceError::failed(s)
    }
}

impl From<&str> for ServiceError {
    fn from(s: &str) -> Self {
        ServiceError::failed(s)
    }
}

/// The future a method call runs as.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<Bytes, RemoteError>> + Send>>;

type Handler = Arc<dyn Fn(CallContext, Bytes) -> CallFuture + Send + Sync>;

/// A named set of methods and attributes, with nested paths (`"random.normal"`).
/// Nothing is reachable unless registered here.
#[derive(Clone, Default)]
pub struct Service {
    methods: BTreeMap<String, Handler>,
    attrs: BTreeMap<String, Bytes>,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("methods", &self.methods.keys().collect::<Vec<_>>())
            .field("attrs", &self.attrs.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn finish<R: Serialize>(r: std::result::Result<R, ServiceError>) -> Result<Bytes, RemoteError> {
    match r {
        Ok(v) => encode(&v).map_err(|e| RemoteError::Failed(format!("unencodable result: {e}"))),
        Err(ServiceError(e)) => Err(e),
    }
}

impl Service {
    /// Starts a service.
    pub fn builder() -> ServiceBuilder {
        ServiceBuilder(Service::default())
    }

    /// A service that is a single function, called with the empty path.
    pub fn function<A, R, F>(f: F) -> Service
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> std::result::Result<R, ServiceError> + Send + Sync + 'static,
    {
        Service::builder().method("", f).build()
    }

    /// Every callable or readable path.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.methods
            .keys()
            .chain(self.attrs.keys())
            .map(String::as_str)
    }

    /// Runs a call or attribute read. Synchronous methods run when the future is first polled,
    /// so a runtime that spawns the future never runs user code on its driver.
    pub fn invoke(&self, ctx: CallContext, path: &str, kind: CallKind, args: Bytes) -> CallFuture {
        match kind {
            CallKind::Get => {
                let r = match self.attrs.get(path) {
                    Some(v) => Ok(v.clone()),
                    None if self.methods.contains_key(path) => Err(RemoteError::NoSuchMethod(
                        format!("{path} is a method: call it"),
                    )),
                    None => Err(RemoteError::NoSuchMethod(path.to_string())),
                };
                Box::pin(std::future::ready(r))
            }
            CallKind::Call => match self.methods.get(path) {
                Some(h) => Box::pin(CatchPanic(h(ctx, args))),
                None => {
                    let e = if self.attrs.contains_key(path) {
                        RemoteError::NoSuchMethod(format!("{path} is an attribute: get it"))
                    } else {
                        RemoteError::NoSuchMethod(path.to_string())
                    };
                    Box::pin(std::future::ready(Err(e)))
                }
            },
        }
    }
}

/// A method's future whose panic becomes [`RemoteError::Failed`]: the caller gets an answer at
/// once, the peer's request slot is freed, and the runtime's task or worker lives on.
struct CatchPanic(CallFuture);

impl Future for CatchPanic {
    type Output = Result<Bytes, RemoteError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                tracing::warn!(%msg, "a service method panicked");
                Poll::Ready(Err(RemoteError::Failed(format!("service panicked: {msg}"))))
            }
        }
    }
}

/// Builds a [`Service`].
pub struct ServiceBuilder(Service);

impl ServiceBuilder {
    /// A synchronous method taking serde-typed arguments (a tuple for several, `()` for none).
    pub fn method<A, R, F>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> std::result::Result<R, ServiceError> + Send + Sync + 'static,
    {
        self.method_with_context(name, move |_: &CallContext, a: A| f(a))
    }

    /// A synchronous method that also learns its caller and deadline ([`CallContext`]).
    ///
    /// ```
    /// use chaski_api::{CallContext, Service};
    /// let svc = Service::builder()
    ///     .method_with_context("whoami", |ctx: &CallContext, (): ()| Ok(ctx.caller.to_string()))
    ///     .build();
    /// assert!(svc.paths().any(|p| p == "whoami"));
    /// ```
    pub fn method_with_context<A, R, F>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(&CallContext, A) -> std::result::Result<R, ServiceError> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let h: Handler = Arc::new(move |ctx: CallContext, args: Bytes| {
            let f = f.clone();
            Box::pin(async move {
                let a: A = decode(&args).map_err(|e| RemoteError::BadArguments(e.to_string()))?;
                finish(f(&ctx, a))
            })
        });
        self.0.methods.insert(name.to_string(), h);
        self
    }

    /// An asynchronous method.
    pub fn method_async<A, R, F, Fut>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        Fut: Future<Output = std::result::Result<R, ServiceError>> + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let h: Handler = Arc::new(move |_: CallContext, args: Bytes| {
            let f = f.clone();
            Box::pin(async move {
                let a: A = decode(&args).map_err(|e| RemoteError::BadArguments(e.to_string()))?;
                finish(f(a).await)
            })
        });
        self.0.methods.insert(name.to_string(), h);
        self
    }

    /// An asynchronous method that also learns its call ([`CallContext`]): its caller, its
    /// deadline, and whether the caller cancelled it. (A method's future is dropped anyway
    /// at its next `.await` once the caller cancels; `ctx.cancelled()` serves work it hands
    /// elsewhere.)
    ///
    /// ```
    /// use chaski_api::{CallContext, Service};
    /// let svc = Service::builder()
    ///     .method_async_with_context("slow", |ctx: CallContext, n: u64| async move {
    ///         if ctx.is_cancelled() {
    ///             return Ok(0);
    ///         }
    ///         Ok(n * 2)
    ///     })
    ///     .build();
    /// assert!(svc.paths().any(|p| p == "slow"));
    /// ```
    pub fn method_async_with_context<A, R, F, Fut>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        Fut: Future<Output = std::result::Result<R, ServiceError>> + Send + 'static,
        F: Fn(CallContext, A) -> Fut + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let h: Handler = Arc::new(move |ctx: CallContext, args: Bytes| {
            let f = f.clone();
            Box::pin(async move {
                let a: A = decode(&args).map_err(|e| RemoteError::BadArguments(e.to_string()))?;
                finish(f(ctx, a).await)
            })
        });
        self.0.methods.insert(name.to_string(), h);
        self
    }

    /// A read-only attribute. An unencodable value is skipped with a warning.
    pub fn attr<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        match encode(value) {
            Ok(b) => {
                self.0.attrs.insert(name.to_string(), b);
            }
            Err(e) => tracing::warn!(name, error = %e, "attribute not registered"),
        }
        self
    }

    /// Everything of `inner` under `name.`.
    pub fn nested(mut self, name: &str, inner: Service) -> Self {
        for (p, h) in inner.methods {
            self.0.methods.insert(join(name, &p), h);
        }
        for (p, v) in inner.attrs {
            self.0.attrs.insert(join(name, &p), v);
        }
        self
    }

    /// The service.
    pub fn build(self) -> Service {
        self.0
    }
}

fn join(a: &str, b: &str) -> String {
    if b.is_empty() {
        a.to_string()
    } else {
        format!("{a}.{b}")
    }
}
