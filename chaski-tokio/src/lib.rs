//! # chaski-tokio
//!
//! A Chaski [`Node`] on tokio: the runtime layer shared by every runtime (`chaski-api`) over
//! tokio's tasks, timers and sockets. Each connection is one task that reads and writes; a
//! handle's call runs the protocol core inline and wakes at most the task that must write.
//!
//! ```no_run
//! use chaski_tokio::{Config, Node};
//! use futures_util::StreamExt;
//!
//! # async fn run() -> Result<(), chaski_tokio::Error> {
//! let a = Node::bind("127.0.0.1:0", Config::default().name("a")).await?;
//! let b = Node::bind("127.0.0.1:0", Config::default().name("b")).await?;
//! b.subscribe("news").await?;
//! a.connect(&b.local_addr().to_string()).await?;
//! a.publish("news", "hello").await?;
//! let msg = b.messages().next().await.unwrap();
//! assert_eq!(&msg.payload[..], b"hello");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod node;
mod runtime;

pub use chaski_api::prelude::*;
pub use chaski_api::Proxy;
pub use node::Node;
