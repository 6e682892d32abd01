//! The user's API: a running node's [`Handle`] (the same on every runtime), its [`Proxy`]s
//! and [`Subscriber`]s, address resolution, TLS set-up, and a small executor for programs
//! without an async runtime. It drives the node through the runtime kit ([`crate::kit`]).

mod block;
mod files;
mod handle;
#[cfg(feature = "pki")]
pub mod pki;
mod proxy;
mod resolve;
mod secure;
mod subscriber;

pub use block::block_on;
pub use files::{Files, Transfer};
pub use handle::{handle_for, start, Handle};
pub use proxy::Proxy;
pub use resolve::{resolve, resolve_all};
pub use secure::{tls, tls_from_dir, CA_FILE, CERT_FILE, KEY_FILE};
pub use subscriber::Subscriber;
