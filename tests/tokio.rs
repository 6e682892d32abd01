//! The conformance suite against chaski-tokio, IPv4 and IPv6.

#[allow(unused_imports)]
use chaski_tests::async_rt;

chaski_tests::conformance!(async_rt::tokio());
