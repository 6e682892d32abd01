//! # chaski-mio
//!
//! Chaski for programs without an async runtime, in two shapes:
//!
//! - [`Node`]: a blocking handle. The node runs on a background thread; methods block until
//!   done (every one has a deadline: handshake, discovery, RPC or status timeout); messages
//!   arrive through [`Messages::recv_timeout`] or [`Messages::blocking_iter`].
//! - [`Driver`]: the same node embedded in *your* `mio::Poll` loop, with no thread of its own:
//!   it registers its sockets, takes readiness events, tells its next timeout, and gives its
//!   events and messages through queues. See `examples/embed.rs`.
//!
//! ```no_run
//! use std::time::Duration;
//! use chaski_mio::{Config, Node};
//!
//! let a = Node::bind("127.0.0.1:0", Config::default().name("a"))?;
//! let b = Node::bind("127.0.0.1:0", Config::default().name("b"))?;
//! b.subscribe("news")?;
//! a.connect(&b.address())?;
//! a.publish("news", "hello")?;
//! let msg = b.messages().recv_timeout(Duration::from_secs(1)).unwrap();
//! assert_eq!(&msg.payload[..], b"hello");
//! # Ok::<(), chaski_mio::Error>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod blocking;
mod calls;
mod driver;

pub use blocking::{Node, Proxy};
pub use chaski_api::prelude::*;
pub use driver::Driver;
